"""`export`: every structure of a campaign directory (built by hand here: labels, one iteration's
relaxed shard, final relaxations) as an ASE database, extended XYZ and pymatgen JSON."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from acnn_mpi.campaign.catalog import campaign_records
from acnn_mpi.campaign.layout import CampaignPaths
from acnn_mpi.campaign.state import CampaignState, save_state
from acnn_mpi.data.store import FrameStore
from acnn_mpi.relax.runner import RelaxResult
from acnn_mpi.relax.shards import ShardWriter, shard_path

TINY = Path(__file__).with_name("tiny.yaml")  # Cu-Pt at 0 GPa


def l12(a=3.7):
    return Atoms("PtCu3", cell=[a] * 3, pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def labelled(atoms, structure_id):
    atoms = atoms.copy()
    atoms.calc = EMT()
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.info["structure_id"] = structure_id
    return atoms


def relaxed(atoms, structure_id, enthalpy, status="converged"):
    return RelaxResult(atoms=atoms, energy=enthalpy, enthalpy=enthalpy, volume=atoms.get_volume(), steps=3,
                       status=status, reason="Cu-Cu 0.5 Å" if status == "unphysical" else "",
                       structure_id=structure_id, max_force=0.01, pressure_residual=0.0)


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory):
    paths = CampaignPaths(tmp_path_factory.mktemp("campaign"))
    paths.make(1)
    save_state(paths.root, CampaignState(iteration=2, stage="csp", converged=True, final_done=True))
    cu, pt = bulk("Cu", "fcc", a=3.6), bulk("Pt", "fcc", a=3.92)
    rattled = l12()
    rattled.rattle(0.05, seed=1)
    with FrameStore(paths.labels, mode="a") as store:
        store.append([labelled(cu, 1), labelled(pt, 2), labelled(l12(), 3)], source="initial", iteration=0)
        store.append([labelled(rattled, 4)], source="iteration 1", iteration=1)
    # model enthalpies (eV): Cu 0, Pt 0, Cu3Pt -0.1 eV/atom, a rattled Cu3Pt 10 meV/atom above
    results = [relaxed(cu, 1000, 0.0), relaxed(pt, 1001, 0.0), relaxed(l12(), 1002, -0.4),
               relaxed(rattled, 1003, -0.36), relaxed(rattled, 1004, -5.0, "unphysical")]
    ShardWriter(shard_path(paths.relax_dir(1), 0)).append(results, {"fingerprints": np.zeros((5, 4), np.float32)})
    with FrameStore(paths.final / "relaxed.h5", mode="a") as store:
        store.append([labelled(cu, 1), labelled(pt, 2), labelled(l12(), 3)], source="final", iteration=2)
    return paths.root


def test_records_carry_enthalpy_e_hull_status_iteration_space_group(campaign_dir):
    records = list(campaign_records(campaign_dir, ["Cu", "Pt"], 0.0))
    kinds = [f["kind"] for _, f in records]
    assert (kinds.count("relaxed"), kinds.count("label"), kinds.count("final")) == (5, 4, 3)
    relaxed_rows = {f["structure_id"]: f for _, f in records if f["kind"] == "relaxed"}
    assert relaxed_rows[1002]["e_hull"] == pytest.approx(0.0, abs=1e-12)
    assert relaxed_rows[1003]["e_hull"] == pytest.approx(0.01)
    assert relaxed_rows[1004]["status"] == "unphysical" and relaxed_rows[1004]["reason"] == "Cu-Cu 0.5 Å"
    assert relaxed_rows[1002]["iteration"] == 1 and relaxed_rows[1002]["space_group"] == "Pm-3m"
    labels = {f["structure_id"]: (atoms, f) for atoms, f in records if f["kind"] == "label"}
    emt = {sid: labelled(atoms, sid).get_potential_energy() for sid, (atoms, _) in labels.items()}
    for sid, (atoms, f) in labels.items():
        assert f["enthalpy"] == pytest.approx(emt[sid])
        assert atoms.get_potential_energy() == pytest.approx(emt[sid])
        assert f["status"] == "labelled" and f["iteration"] == (1 if sid == 4 else 0)
    # EMT: L1_2 Cu3Pt is bound, so it is on the label hull and the rattled copy lies above it
    assert labels[3][1]["e_hull"] == pytest.approx(0.0, abs=1e-9) and labels[4][1]["e_hull"] > 0
    assert labels[3][1]["space_group_number"] == 221 and labels[1][1]["space_group"] == "Fm-3m"


def test_ase_db_queries_by_space_group(acnn, campaign_dir, tmp_path):
    from ase.db import connect

    out = acnn(["export", campaign_dir, "--format", "ase-db", "--config", TINY, "-o", tmp_path / "all.db"])
    assert out.returncode == 0, out.stderr
    assert "wrote 12 structures (relaxed, label, final; Cu-Pt at 0 GPa)" in out.stdout
    db = connect(tmp_path / "all.db")
    assert db.count() == 12
    cubic = list(db.select(space_group="Pm-3m"))
    # the ideal L1_2 cell of each kind; the copies rattled by 0.05 Å are below cubic at 0.1 Å
    assert {r.composition for r in cubic} == {"Cu3Pt"}
    assert sorted(r.kind for r in cubic) == ["final", "label", "relaxed"]
    assert {r.structure_id for r in cubic} == {1002, 3}
    stable = db.get(kind="final", composition="Cu3Pt")
    assert stable.e_hull == pytest.approx(0.0, abs=1e-9) and stable.space_group_number == 221
    assert stable.energy == pytest.approx(labelled(l12(), 3).get_potential_energy())
    assert [r.structure_id for r in db.select("e_hull>0.005,kind=relaxed")] == [1003]
    assert db.get(structure_id=1004).e_hull < -1  # unphysical: measured against the usable hull
    assert db.get(structure_id=1004).status == "unphysical"


def test_extxyz_and_pymatgen_json_round_trip(acnn, campaign_dir, tmp_path):
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    out = acnn(["export", campaign_dir, "--format", "extxyz", "--pressure", "0", "--kinds", "label,final",
                "-o", tmp_path / "labels.xyz"])
    assert out.returncode == 0, out.stderr
    frames = read(tmp_path / "labels.xyz", ":")
    assert len(frames) == 7 and [a.info["kind"] for a in frames].count("final") == 3
    assert frames[0].info["space_group"] == "Fm-3m" and frames[0].get_forces().shape == (1, 3)
    out = acnn(["export", campaign_dir, "--format", "pymatgen-json", "--pressure", "0"])
    assert out.returncode == 0, out.stderr
    structures = [Structure.from_dict(d) for d in json.loads((campaign_dir / "structures.json").read_text())]
    assert len(structures) == 12
    for s in structures:
        assert set(s.properties) >= {"kind", "enthalpy", "e_hull", "status", "iteration", "space_group"}
        number = SpacegroupAnalyzer(s, symprec=0.1).get_space_group_number()
        assert number == s.properties["space_group_number"]
    assert sum(s.properties["status"] == "converged" for s in structures) == 4
    bad = acnn(["export", campaign_dir, "--format", "extxyz"])
    assert bad.returncode == 2 and "--config" in bad.stderr


def test_report_links_symmetrised_phases(campaign_dir, tmp_path):
    from acnn_mpi.campaign.processing import labels_hull, write_hull_files
    from acnn_mpi.campaign.report import write_report
    from acnn_mpi.config import load_config

    config = load_config(TINY)
    paths = CampaignPaths(campaign_dir)
    label_hull, hull = labels_hull(config, paths.labels, paths.final / "relaxed.h5")   # the final hull
    write_hull_files(paths.final, label_hull, hull, title="test")
    files = write_report(campaign_dir, tmp_path / "report")
    text = files.markdown.read_text()
    assert "| Cu3Pt | Pm-3m (221) |" in text and "[cif](structures/002_Cu3Pt_sg221_id3.cif)" in text
    assert "symprec = 0.1 Å" in text
    cif = tmp_path / "report" / "structures" / "002_Cu3Pt_sg221_id3.cif"
    assert len(read(cif)) == 4 and "Pt1 Pt 1 a" in cif.read_text() and " Cu 3 c " in cif.read_text()
    meta = json.loads(cif.with_suffix(".json").read_text())
    assert meta["stable"] and meta["frame"] == 2 and meta["primitive_atoms"] == 4
    assert len(read(tmp_path / "report" / "structures" / "primitive" / "001_Cu_sg225_id1.cif")) == 1
    assert 'href="structures/002_Cu3Pt_sg221_id3.cif"' in files.html.read_text()
