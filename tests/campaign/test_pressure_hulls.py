"""The pieces of a campaign over several pressures, without MPI: the per-pressure views and paths,
the label hull at P (H = E + PV of the same EMT-labelled frames) and the enthalpy-pressure table."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.campaign.layout import CampaignPaths, part_pressure, pressure_part
from acnn_mpi.campaign.plan import PRESSURE_STRIDE, Cell, at_pressure_index, plan_chunks
from acnn_mpi.campaign.pressures import pressure_series, pressure_views, write_pressure_summary
from acnn_mpi.campaign.processing import labels_hull
from acnn_mpi.config import load_config
from acnn_mpi.data.store import FrameStore

TINY = Path(__file__).with_name("tiny.yaml")
EV_PER_A3_PER_GPA = 1 / 160.21766208


def test_views_keep_the_single_pressure_layout_and_give_each_pressure_folders(tmp_path):
    one = load_config(TINY)
    (view,) = pressure_views(one, CampaignPaths(tmp_path))
    assert view.paths.relax_dir(1) == tmp_path / "iter_001" / "relax"
    assert view.paths.selection(1) == tmp_path / "iter_001" / "selection.xyz"
    assert view.paths.final == tmp_path / "final" and view.config.pressure == 0.0
    several = one.model_copy(update={"pressure": [0.0, 12.5]})
    views = pressure_views(several, CampaignPaths(tmp_path))
    assert [v.key for v in views] == ["0", "12.5"] and views[1].config.pressure == 12.5
    assert views[1].paths.relax_dir(2) == tmp_path / "iter_002" / "relax" / "P12.5"
    assert views[1].paths.hull_dir(2) == tmp_path / "iter_002" / "P12.5"
    assert views[1].paths.final == tmp_path / "final" / "P12.5"
    assert views[1].paths.final_root == tmp_path / "final" and views[1].paths.labels == tmp_path / "labels.h5"
    assert part_pressure(pressure_part(-1.5)) == -1.5 and part_pressure("primitive") is None


def test_each_pressure_gets_structures_and_ids_of_its_own():
    cells = [Cell(counts=(("Cu", 1),), formula="Cu", units=1), Cell(counts=(("Pt", 1),), formula="Pt", units=1)]
    chunks = plan_chunks(cells, 2, 10, 4, seed=3)
    assert at_pressure_index(chunks, 0) == chunks
    second = at_pressure_index(chunks, 1)
    assert [c.members for c in second] == [c.members for c in chunks]   # the same spread of cells
    assert [c.first_id - d.first_id for c, d in zip(second, chunks)] == [PRESSURE_STRIDE] * len(chunks)
    assert all(c.seed == (*d.seed, 1) for c, d in zip(second, chunks))
    ids = [set(c.ids) for c in chunks], [set(c.ids) for c in second]
    assert not set().union(*ids[0]) & set().union(*ids[1])


def l12(a):
    return Atoms("PtCu3", cell=[a] * 3, pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """EMT labels of fcc Cu, fcc Pt and L1_2 Cu3Pt, each near its 0 GPa volume and compressed."""
    path = tmp_path_factory.mktemp("labels") / "labels.h5"
    frames = []
    for sid, atoms in enumerate([bulk("Cu", "fcc", a=3.60), bulk("Cu", "fcc", a=3.40),
                                 bulk("Pt", "fcc", a=3.92), bulk("Pt", "fcc", a=3.75),
                                 l12(3.70), l12(3.50)]):
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.info["structure_id"] = sid
        frames.append(atoms)
    with FrameStore(path, mode="a") as out:
        out.append(frames, source="initial", iteration=0)
    return path


def test_label_hull_at_each_pressure_is_e_plus_pv_and_favours_the_dense_frames(store):
    config = load_config(TINY).model_copy(update={"pressure": [0.0, 60.0]})
    with FrameStore(store, mode="r") as labels:
        arrays = labels.read_arrays()
    volume = np.abs(np.linalg.det(arrays.cell)) / arrays.n_atoms
    energy = arrays.energy / arrays.n_atoms
    hulls = {}
    for p in config.pressures_gpa:
        label_hull, _ = labels_hull(config.at_pressure(p), store)
        hulls[p] = {"stable": label_hull.phases, "compositions": label_hull.candidates}
        h = energy + p * EV_PER_A3_PER_GPA * volume
        best = {e["formula"]: e["frame"] for e in label_hull.candidates}
        for formula, frames in (("Cu", [0, 1]), ("Pt", [2, 3]), ("Cu3Pt", [4, 5])):
            assert best[formula] == frames[int(np.argmin(h[frames]))]
        expected = h[best["Cu3Pt"]] - (0.75 * h[best["Cu"]] + 0.25 * h[best["Pt"]])
        (compound,) = [e for e in label_hull.phases if e["formula"] == "Cu3Pt"]
        assert compound["formation_enthalpy_meV"] == pytest.approx(1000 * expected, abs=1e-3)
    # at 0 GPa the near-equilibrium cells win, at 60 GPa the compressed ones (PV = 0.37 eV/Å³ ...)
    assert {e["formula"]: e["frame"] for e in hulls[0.0]["compositions"]} == {"Cu": 0, "Pt": 2, "Cu3Pt": 4}
    assert {e["formula"]: e["frame"] for e in hulls[60.0]["compositions"]} == {"Cu": 1, "Pt": 3, "Cu3Pt": 5}
    rows = pressure_series(hulls)
    assert [(r["formula"], r["pressure_gpa"]) for r in rows] == [("Cu3Pt", 0.0), ("Cu3Pt", 60.0)]
    assert all(r["stable"] and r["e_hull_meV"] == 0.0 for r in rows)


def test_pressure_summary_lists_compounds_stable_somewhere_and_draws_them(tmp_path):
    def hull(stable, above):
        entries = [{"formula": f, "formation_enthalpy_meV": h, "e_hull_meV": 0.0, "structure_id": i,
                    "space_group": "Pm-3m (221)"} for f, h, i in stable]
        return {"stable": entries, "compositions": entries + [
            {"formula": f, "formation_enthalpy_meV": h, "e_hull_meV": e, "structure_id": i} for f, h, e, i in above]}

    hulls = {0.0: hull([("Cu", 0.0, 1), ("Pt", 0.0, 2), ("CuPt", -100.0, 3)], [("Cu3Pt", -60.0, 12.0, 4),
                                                                             ("CuPt3", -10.0, 30.0, 5)]),
             50.0: hull([("Cu", 0.0, 1), ("Pt", 0.0, 2), ("Cu3Pt", -90.0, 6)], [("CuPt", -70.0, 5.0, 3)])}
    rows = write_pressure_summary(tmp_path, hulls, title="test")
    table = {(r["formula"], r["pressure_gpa"]): (r["stable"], r["e_hull_meV"]) for r in rows}
    # CuPt3 is stable nowhere, the elements are 0 by definition: left out
    assert table == {("CuPt", 0.0): (True, 0.0), ("Cu3Pt", 0.0): (False, 12.0),
                     ("Cu3Pt", 50.0): (True, 0.0), ("CuPt", 50.0): (False, 5.0)}
    assert (tmp_path / "enthalpy_vs_pressure.csv").read_text().count("\n") == 5
    assert (tmp_path / "enthalpy_vs_pressure.png").stat().st_size > 10_000
