"""``python -m acnn_mpi data import/export/info``: a real subprocess for the main path and the
error exit codes; in-process ``cli.main`` for the rest (each subprocess costs seconds)."""

import json

import ase.io
import numpy as np
import pytest

from acnn_mpi.cli import main
from acnn_mpi.data.io import read_frames
from acnn_mpi.data.store import FrameStore
from tests.data.helpers import assert_same_frames, emt_frames


def test_import_info_export_subprocess(acnn, tmp_path):
    frames = emt_frames(6, stress_every=2)
    ase.io.write(tmp_path / "a.xyz", frames[:4], format="extxyz")
    ase.io.write(tmp_path / "b.xyz", frames[4:], format="extxyz")
    store = tmp_path / "labels.h5"
    result = acnn(["data", "import", tmp_path / "a.xyz", tmp_path / "b.xyz", "--store", store,
                   "--iteration", "1"], check=True)
    assert "a.xyz: 4 frames read, 4 added, 0 bad" in result.stdout
    assert "labels.h5: 6 frames (6 added)" in result.stdout
    info = json.loads(acnn(["data", "info", store, "--json"], check=True).stdout)
    assert info["frames"] == 6 and info["with_stress"] == 3
    assert info["by_source"] == {"a.xyz": 4, "b.xyz": 2} and info["by_iteration"] == {"1": 6}
    result = acnn(["data", "export", "--store", store, tmp_path / "dp"], check=True)
    assert "wrote 6 frames" in result.stdout and "(deepmd)" in result.stdout
    assert_same_frames(sorted(read_frames(tmp_path / "dp"), key=_energy), sorted(frames, key=_energy),
                       atol=1e-8)  # the positions went through extended XYZ (8 decimals)


def _energy(atoms):
    return atoms.get_potential_energy()


def test_errors_are_one_line_with_exit_code_2(acnn, tmp_path):
    result = acnn(["data", "import", tmp_path / "missing.xyz", "--store", tmp_path / "s.h5"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.xyz'}: no such file or folder"
    assert not (tmp_path / "s.h5").exists()


def _run(*args):
    return main(["data", *map(str, args)])


def test_refuse_then_skip(tmp_path, capsys):
    frames = emt_frames(5)
    bad = frames[2].copy()
    bad.calc = frames[2].calc
    bad.positions[1] = bad.positions[0] + [0.1, 0, 0]
    frames[2] = bad
    ase.io.write(tmp_path / "in.xyz", frames, format="extxyz")
    store = tmp_path / "s.h5"
    assert _run("import", tmp_path / "in.xyz", "--store", store) == 2
    err = capsys.readouterr().err
    assert "1 bad frame(s); nothing imported" in err and "in.xyz frame 2: atoms 0.100 Å apart" in err
    assert not store.exists()  # a refused import into a new store leaves no file
    assert _run("import", tmp_path / "in.xyz", "--store", store, "--on-bad", "skip",
                "--source", "emt", "--elements", "Cu", "Au", "Al") == 0
    out = capsys.readouterr().out
    assert "5 frames read, 4 added, 1 bad" in out and "in.xyz frame 2: atoms" in out
    with FrameStore(store, "r") as s:
        assert s.column("source").tolist() == ["emt"] * 4
        assert_same_frames(s.read(), frames[:2] + frames[3:], atol=1e-8)  # extxyz: 8 decimals
    assert _run("import", tmp_path / "in.xyz", "--store", store) == 2  # existing store: unchanged
    with FrameStore(store, "r") as s:
        assert len(s) == 4


def test_import_keys_formats_and_export_filters(tmp_path, capsys):
    frames = emt_frames(4)
    plain = []
    for atoms in frames:
        copy = atoms.copy()
        copy.info["E_dft"] = atoms.get_potential_energy()
        copy.arrays["F_dft"] = atoms.get_forces()
        plain.append(copy)
    ase.io.write(tmp_path / "dft.data", plain, format="extxyz")  # no telling extension
    store = tmp_path / "s.h5"
    assert _run("import", tmp_path / "dft.data", "--store", store, "--format", "extxyz",
                "--energy-key", "E_dft", "--forces-key", "F_dft", "--iteration", "3") == 0
    assert _run("import", tmp_path / "dft.data", "--store", store, "--format", "bogus") == 2
    assert "unknown import format 'bogus'" in capsys.readouterr().err
    ase.io.write(tmp_path / "more.traj", frames[:2])
    assert _run("import", tmp_path / "more.traj", "--store", store) == 0
    assert _run("info", store) == 0
    out = capsys.readouterr().out
    assert "s.h5: 6 frames" in out and "by iteration: 0: 2, 3: 4" in out
    assert _run("export", "--store", store, tmp_path / "it3.xyz", "--iteration", "3") == 0
    back = read_frames(tmp_path / "it3.xyz")
    assert [a.get_potential_energy() for a in back] == [a.get_potential_energy() for a in frames]
    assert all("stress" not in a.calc.results for a in back)  # not imported: no --stress-key
    np.testing.assert_allclose(back[1].get_forces(), frames[1].get_forces(), atol=1e-8)
    assert _run("export", "--store", store, tmp_path / "it3.xyz") == 2
    assert "exists" in capsys.readouterr().err
    assert _run("export", "--store", store, tmp_path / "none.xyz", "--source", "nope") == 2
    assert "no frames to export" in capsys.readouterr().err
    assert _run("info", tmp_path / "missing.h5") == 2


@pytest.mark.parametrize("ranks", [2])
def test_under_mpi_only_the_root_writes(acnn, tmp_path, ranks):
    ase.io.write(tmp_path / "in.xyz", emt_frames(3), format="extxyz")
    result = acnn(["data", "import", tmp_path / "in.xyz", "--store", tmp_path / "s.h5"],
                  ranks=ranks, check=True)
    assert result.stdout.count("s.h5: 3 frames (3 added)") == 1
    with FrameStore(tmp_path / "s.h5", "r") as s:
        assert len(s) == 3
