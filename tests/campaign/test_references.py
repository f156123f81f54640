"""Elemental references of the labels' hull: a missing element never stops it, given reference
enthalpies and structures stand in for labels, and the energy zero of the labeller cancels."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.campaign.controller import REFERENCE_ID, Controller
from acnn_mpi.campaign.layout import CampaignPaths
from acnn_mpi.campaign.plan import search_cells
from acnn_mpi.campaign.processing import GIVEN, labels_hull
from acnn_mpi.campaign.state import CampaignState
from acnn_mpi.config import config_from_dict, load_config
from acnn_mpi.csp.compositions import compositions_from_config
from acnn_mpi.data.store import FrameStore
from acnn_mpi.errors import UserError
from acnn_mpi.parallel.comm import Comm
from tests.campaign.shifted_labeller import DFT_LIKE_SHIFTS, ShiftedEMT

TINY = Path(__file__).with_name("tiny.yaml")


def tiny(**changes):
    data = yaml.safe_load(TINY.read_text())
    data.update(changes)
    return config_from_dict(data, base_dir=str(TINY.parent))


def l10(a=2.75, c=3.8):
    return Atoms(["Cu", "Pt"], cell=[a, a, c], pbc=True, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]])


def labelled(structures, calc_factory):
    out = []
    for k, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.info["structure_id"] = k
        atoms.calc = calc_factory()
        atoms.get_potential_energy()
        atoms.get_stress()
        out.append(atoms)
    return out


def energy_per_atom(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy() / len(atoms)


STRUCTURES = [bulk("Cu", "fcc", a=3.6), l10(), bulk("Cu", "bcc", a=2.9)]   # no pure Pt


@pytest.mark.parametrize("shifts", [{}, DFT_LIKE_SHIFTS])
def test_missing_element_then_a_given_reference(tmp_path, shifts):
    store = tmp_path / "labels.h5"
    with FrameStore(store) as s:
        s.append(labelled(STRUCTURES, lambda: ShiftedEMT(shifts=shifts)))
    label_hull, hull = labels_hull(tiny(), store)
    assert label_hull.missing == ["Pt"]
    assert [p["formula"] for p in label_hull.phases] == ["Cu"] and hull.elements == ["Cu"]
    assert np.isnan(label_hull.e_hull[1]) and 0.02 < label_hull.e_hull[2] < 0.1   # CuPt: no hull; bcc Cu
    # the Pt reference given in the labeller's own energy zero completes the hull
    mu_pt = energy_per_atom(bulk("Pt", "fcc", a=3.92), ShiftedEMT(shifts=shifts))
    config = tiny(references={"enthalpies": {"Pt": mu_pt}})
    label_hull, hull = labels_hull(config, store)
    assert label_hull.missing == [] and hull.elements == ["Cu", "Pt"]
    stable = {p["formula"]: p for p in label_hull.phases}
    assert set(stable) == {"Cu", "CuPt", "Pt"}
    assert stable["Pt"]["source"] == GIVEN and stable["Pt"]["space_group"] == "given"
    assert stable["Pt"]["frame"] == -1
    cu, cupt = (energy_per_atom(a, EMT()) for a in STRUCTURES[:2])
    pt = energy_per_atom(bulk("Pt", "fcc", a=3.92), EMT())
    expected = 1000 * (cupt - (cu + pt) / 2)   # by hand, in plain EMT's zero
    assert expected < -50
    assert stable["CuPt"]["formation_enthalpy_meV"] == pytest.approx(expected, abs=1e-3)
    assert list(label_hull.frames) == [0, 1, 2, -1]


def test_a_hull_from_no_element_at_all(tmp_path):
    store = tmp_path / "labels.h5"
    with FrameStore(store) as s:
        s.append(labelled([l10()], EMT))
    label_hull, hull = labels_hull(tiny(), store)
    assert hull is None and label_hull.phases == [] and label_hull.missing == ["Cu", "Pt"]
    label_hull, hull = labels_hull(tiny(), tmp_path / "absent.h5")
    assert hull is None and label_hull.missing == ["Cu", "Pt"]


def test_relaxed_frames_join_the_single_points(tmp_path):
    """The final hull: relaxations by the labeller, and single points where none succeeded."""
    store, relaxed = tmp_path / "labels.h5", tmp_path / "relaxed.h5"
    with FrameStore(store) as s:
        s.append(labelled([bulk("Cu", "fcc", a=3.7), bulk("Pt", "fcc", a=3.92), l10()], EMT))
    with FrameStore(relaxed) as s:
        s.append(labelled([bulk("Cu", "fcc", a=3.6)], EMT))   # lower than the a = 3.7 single point
    label_hull, _ = labels_hull(tiny(), store, relaxed)
    sources = {p["formula"]: p["source"] for p in label_hull.phases}
    assert sources == {"Cu": "relaxed", "Pt": "single point", "CuPt": "single point"}


def test_reference_settings_are_checked(tmp_path):
    with pytest.raises(UserError, match="references.enthalpies names 'Au'"):
        tiny(references={"enthalpies": {"Au": -3.0}})
    with pytest.raises(UserError, match="finite"):
        tiny(references={"enthalpies": {"Pt": float("nan")}})
    with pytest.raises(UserError, match="structure file .*pt.cif not found"):
        tiny(references={"structures": {"Pt": str(tmp_path / "pt.cif")}})
    bulk("Cu", "fcc", a=3.6).write(tmp_path / "cu.cif")
    with pytest.raises(UserError, match=r"must hold Pt atoms only, found \['Cu'\]"):
        tiny(references={"structures": {"Pt": str(tmp_path / "cu.cif")}})
    (tmp_path / "campaign.yaml").write_text(TINY.read_text() + "references: {structures: {Cu: cu.cif}}\n")
    config = load_config(tmp_path / "campaign.yaml")
    assert config.references.structures == {"Cu": str(tmp_path / "cu.cif")}


def test_elements_outside_the_search_space_are_sampled_and_given_structures_labelled(tmp_path):
    bulk("Pt", "fcc", a=3.92).write(tmp_path / "pt.cif")
    config = tiny(compositions={"max_atoms_per_formula": 4, "max_atoms_per_cell": 4,
                                "include_subsystems": False},
                  references={"structures": {"Pt": str(tmp_path / "pt.cif")}})
    config.output_dir = str(tmp_path / "run")
    cells = search_cells(compositions_from_config(config))
    assert all(len(c.counts) == 2 for c in cells)       # a binary-only search space
    paths = CampaignPaths(Path(config.output_dir))
    paths.make()
    controller = Controller(config, Comm(None), paths, CampaignState(), cells, 2)
    assert [(c.formula, c.n_atoms) for c in controller.elemental_cells()] == [("Cu", 1), ("Pt", 1)]
    from acnn_mpi.campaign.stages import Sample

    assert controller.run_stage(Sample(controller), 0) and controller.state.stage == "label"
    import ase.io

    sample = ase.io.read(paths.sample(), ":")
    assert len(sample) == config.search.initial_structures + 1
    formulas = [a.get_chemical_formula() for a in sample[:-1]]
    # the elements outside the space are compositions of their own, dealt first in each round
    assert set(formulas[:2]) == {"Cu", "Pt"} and min(formulas.count("Cu"), formulas.count("Pt")) >= 2
    reference = sample[-1]
    assert reference.info["structure_id"] == REFERENCE_ID - 1 and reference.get_chemical_formula() == "Pt"
