"""Every tool reads every other tool's output: label → data → train → relax → hull → label, as one
chain of commands on the files each one writes, serial and under mpiexec -n 2."""

import json
from pathlib import Path

import h5py
import pytest
from ase.build import bulk
from ase.io import write

TINY = Path(__file__).parent / "campaign" / "tiny.yaml"   # Cu-Pt, a small ACNN


def structures():
    out = []
    for k, (symbols, a) in enumerate([("Cu", 3.6), ("Pt", 3.92), ("Cu", 3.7), ("Pt", 4.0), ("Cu", 3.5),
                                      ("Pt", 3.85)]):
        atoms = bulk(symbols, "fcc", a=a, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.info["structure_id"] = 100 + k
        out.append(atoms)
    return out


@pytest.mark.parametrize("ranks", [None, pytest.param(2, marks=pytest.mark.mpi)])
def test_label_data_train_relax_hull_label(acnn, tmp_path, ranks):
    def run(*args, **kwargs):
        result = acnn([*map(str, args)], ranks=ranks, timeout=600, **kwargs)
        assert result.returncode == 0, f"{args[0]}: {result.stdout}\n{result.stderr}"
        return result

    write(tmp_path / "start.xyz", structures())
    emt = ("--calculator", "ase.calculators.emt.EMT")
    run("label", "--input", tmp_path / "start.xyz", "--out", tmp_path / "labels.h5", *emt)
    info = json.loads(acnn(["data", "info", tmp_path / "labels.h5", "--json"], timeout=300).stdout)
    assert info["frames"] == 6
    run("train", "--data", tmp_path / "labels.h5", "--config", TINY, "--out", tmp_path / "train",
        "--steps", "3")
    # relax reads the label store, and writes shards that hull and label read
    run("relax", "--model", tmp_path / "train" / "model.pt", "--input", tmp_path / "labels.h5",
        "--out", tmp_path / "relaxed", "--max-steps", "40", "--fmax", "0.05", "--stress-tol", "1.0",
        "--dh-tol", "1e-3", "--batch-size", "4",
        "--chunk-size", "2")
    hull = run("hull", tmp_path / "relaxed", "--elements", "Cu,Pt", "--export-poscar", tmp_path / "phases")
    assert "Cu" in hull.stdout and "Pt" in hull.stdout
    assert any((tmp_path / "phases").iterdir())
    run("label", "--input", tmp_path / "relaxed", "--out", tmp_path / "relabelled.h5", *emt)
    with h5py.File(tmp_path / "relabelled.h5", "r") as f:
        ids = sorted(f["frames/structure_id"][: f.attrs["n_frames"]].tolist())
    assert ids == list(range(100, 106))  # every structure relaxed once and labelled again
