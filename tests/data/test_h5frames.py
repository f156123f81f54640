"""The one HDF5 frame layout: every column group round trips, a writer killed mid-append leaves
rows past the counter that readers ignore and the next writer overwrites, the fingerprints stay on
disk when read lazily, and a label store, a relaxation shard and a structure file are one layout;
files of the previous version (label stores, flat relaxation shards) are still read."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
from ase.build import bulk

from acnn_mpi.data import h5frames
from acnn_mpi.data.store import FrameStore
from acnn_mpi.errors import DamagedFileError
from acnn_mpi.relax.io import StructureFile, write_structures
from acnn_mpi.relax.runner import RelaxResult
from acnn_mpi.relax.shards import ShardWriter, finished_ids, read_results, shard_path
from tests.conftest import REPO
from tests.data.helpers import assert_same_frames, emt_frames


def columns(n, seed=0, first_id=0):
    """(per-frame, per-atom) columns of ``n`` random frames with every column group, fingerprints
    (n, 2, 5) float32."""
    rng = np.random.default_rng(seed)
    n_atoms = rng.integers(1, 6, n)
    atoms_total = int(n_atoms.sum())
    statuses = np.array(["converged", "not_converged", "unphysical"], dtype=object)
    frames = {
        "n_atoms": n_atoms, "cell": rng.normal(size=(n, 3, 3)), "pbc": rng.random((n, 3)) > 0.3,
        "structure_id": first_id + np.arange(n), "energy": rng.normal(size=n),
        "stress": rng.normal(size=(n, 3, 3)), "has_stress": rng.random(n) > 0.5,
        "iteration": rng.integers(0, 4, n), "source": np.array([f"run {k % 3}" for k in range(n)], object),
        "formula": np.array(["Cu3Au", "Pt"] * n, object)[:n], "labeller": np.array(["EMT"] * n, object),
        "tags": np.array(["é" * (k % 4) for k in range(n)], object),
        "status": statuses[rng.integers(0, 3, n)], "reason": np.array(["x" * (k * 37) for k in range(n)], object),
        "steps": rng.integers(0, 500, n), "enthalpy": rng.normal(size=n), "volume": rng.random(n) * 50,
        "max_force": rng.random(n), "pressure_residual": rng.random(n), "pressure": rng.normal(size=n),
        "fingerprints": rng.random((n, 2, 5)).astype(np.float32),
    }
    per_atom = {"numbers": rng.integers(1, 90, atoms_total).astype(np.int32),
                "positions": rng.normal(size=(atoms_total, 3)), "forces": rng.normal(size=(atoms_total, 3))}
    return frames, per_atom


def new_file(path, groups=("labels", "relax")):
    with h5py.File(path, "w") as f:
        h5frames.create_layout(f, "labels", list(groups), {"note": "mine"})


def test_every_column_group_round_trips(tmp_path):
    path = tmp_path / "all.h5"
    new_file(path)
    parts = [columns(7, seed=1), columns(5, seed=2, first_id=7)]
    with h5py.File(path, "a") as f:
        writer = h5frames.FrameWriter(f)
        for frames, atoms in parts:
            writer.append(frames, atoms)
    with h5py.File(path, "r") as f:
        reader = h5frames.FrameReader(f)
        assert len(reader) == 12 and reader.groups == ["labels", "relax", "fingerprints"]
        assert f.attrs["note"] == "mine" and f.attrs["version"] == h5frames.VERSION
        for name in parts[0][0]:
            want = np.concatenate([p[0][name] for p in parts])
            got = reader.read(name)
            assert got.shape == want.shape and got.dtype.kind == want.dtype.kind, name
            assert (got == want).all(), name
            rows = np.array([0, 6, 7, 11])
            assert (reader.read(name, rows) == want[rows]).all(), name
        offsets = reader.offsets()
        np.testing.assert_array_equal(reader.read("atom_offset"), offsets[:-1])
        for name in parts[0][1]:
            want = np.concatenate([p[1][name] for p in parts])
            np.testing.assert_array_equal(reader.read_atoms(name), want)
            rows = np.array([2, 8])
            np.testing.assert_array_equal(reader.read_atoms(name, rows), np.concatenate(
                [want[offsets[r]:offsets[r + 1]] for r in rows]))
        assert f["frames/fingerprints"].dtype == np.float32 and f["frames/status"].dtype.kind == "O"
        # equal text values are one str object (a million statuses cost 8 bytes each)
        status = reader.read("status")
        assert len({id(s) for s in status}) == len(set(status))


def test_a_writer_killed_mid_append_leaves_rows_that_are_ignored_then_overwritten(tmp_path):
    path = tmp_path / "k.h5"
    new_file(path)
    script = textwrap.dedent(f"""
        import os, h5py
        from acnn_mpi.data import h5frames
        from tests.data.test_h5frames import columns
        with h5py.File({str(path)!r}, "a") as f:
            writer = h5frames.FrameWriter(f)
            writer.append(*columns(4, seed=1))
            writer.write(*columns(3, seed=2, first_id=100))  # written, flushed, never committed
            f.flush()
            os._exit(9)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 9, result.stderr
    first, atoms = columns(4, seed=1)
    with h5py.File(path, "r") as f:
        assert f.attrs["n_frames"] == 4 and f["frames/energy"].shape[0] == 7  # the tail is there ...
        reader = h5frames.FrameReader(f)
        assert len(reader) == 4 and reader.n_atoms == first["n_atoms"].sum()  # ... and never read
        np.testing.assert_array_equal(reader.read("structure_id"), [0, 1, 2, 3])
    with h5py.File(path, "a") as f:  # the next writer resumes from the counter
        writer = h5frames.FrameWriter(f)
        assert f["frames/energy"].shape[0] == 4 and f["atoms/positions"].shape[0] == first["n_atoms"].sum()
        writer.append(*columns(2, seed=3, first_id=50))
    with h5py.File(path, "r") as f:
        reader = h5frames.FrameReader(f)
        np.testing.assert_array_equal(reader.read("structure_id"), [0, 1, 2, 3, 50, 51])
        np.testing.assert_array_equal(reader.read_atoms("positions", [0, 1, 2, 3]), atoms["positions"])


@pytest.mark.parametrize("opener", ["shard", "store"])
def test_a_process_killed_while_creating_a_file_leaves_none(tmp_path, opener):
    """The file a shard writer or a label store makes at its first write appears whole or not at
    all: a process killed (os._exit) half-way through the layout leaves no file at the path, and
    the next run creates it and writes as if nothing had happened."""
    path = shard_path(tmp_path, 0) if opener == "shard" else str(tmp_path / "labels.h5")
    script = textwrap.dedent(f"""
        import os
        from acnn_mpi.data import h5frames
        from acnn_mpi.data.store import FrameStore
        from acnn_mpi.relax.shards import ShardWriter
        from tests.data.test_h5frames import results

        def killed(f, *args, **kwargs):
            f.create_group("atoms")
            f.flush()
            os._exit(9)

        h5frames.create_layout = killed
        if {opener!r} == "shard":
            ShardWriter({path!r}).append(results(1))
        else:
            FrameStore({path!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 9, result.stderr
    assert not os.path.exists(path)
    if opener == "shard":
        ShardWriter(path).append(results(2))
        assert finished_ids(tmp_path).tolist() == [1000, 1001]
    else:
        frames = emt_frames(2)
        with FrameStore(path) as store:
            store.append(frames)
        with FrameStore(path, "r") as store:
            assert_same_frames(store.read(), frames)


def test_a_write_must_give_every_column_of_the_file(tmp_path):
    path = tmp_path / "m.h5"
    new_file(path)
    frames, atoms = columns(2)
    del frames["tags"]
    with h5py.File(path, "a") as f, pytest.raises(ValueError, match="lacks the columns tags"):
        h5frames.FrameWriter(f).write(frames, atoms)


def results(n, seed=0):
    """RelaxResult-like rows of ``n`` Cu/Au cells."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms[k % 4].symbol = "Au"
        atoms.rattle(0.05, seed=k + seed)
        out.append(RelaxResult(atoms=atoms, energy=-k, enthalpy=-2.0 * k, volume=47.0, steps=k,
                               status=["converged", "unphysical"][k % 2], reason="why " * (k % 3),
                               structure_id=1000 + k, max_force=0.01, pressure_residual=0.1,
                               pressure=float(rng.normal())))
    return out


def test_fingerprints_stay_on_disk_and_are_read_by_row(tmp_path):
    fingerprints = np.random.default_rng(0).random((300, 3, 4)).astype(np.float32)
    rows = results(300)
    ShardWriter(shard_path(tmp_path, 0), pressure_gpa=5.0).append(rows[:180], {"fingerprints": fingerprints[:180]})
    ShardWriter(shard_path(tmp_path, 1), pressure_gpa=5.0).append(rows[180:], {"fingerprints": fingerprints[180:]})
    lazy = read_results(tmp_path, columns=("fingerprints",), lazy=True)
    column = lazy.extra["fingerprints"]
    assert not isinstance(column, np.ndarray) and len(column) == 300
    pick = np.array([299, 0, 181, 179, 5, 5])
    order = np.argsort(lazy.structure_id)  # results in id order
    np.testing.assert_array_equal(column[order[pick]], fingerprints[pick])
    assert lazy.reason[order[5]] == "why why " and lazy.atoms(order[7]).get_chemical_formula() == "AuCu3"
    # what stays in memory per structure: the small columns only (~80 bytes); the float columns
    # processing does not use are read by row, equal to the full read
    memory = sum(v.nbytes for v in vars(lazy).values() if isinstance(v, np.ndarray))
    assert memory / len(lazy) <= 80
    full = read_results(tmp_path, columns=("fingerprints",))
    np.testing.assert_array_equal(full.extra["fingerprints"][order], fingerprints)
    for name in ("energy", "max_force", "pressure_residual", "pressure"):
        assert not isinstance(getattr(lazy, name), np.ndarray)
        np.testing.assert_array_equal(getattr(lazy, name)[pick], getattr(full, name)[pick])
    assert lazy.atoms(order[7]).info["energy"] == -7.0 == full.atoms(order[7]).info["energy"]


def test_label_store_shard_and_structure_file_are_one_layout(tmp_path):
    with FrameStore(tmp_path / "labels.h5", "w") as store:
        store.append(emt_frames(3))
    ShardWriter(shard_path(tmp_path, 0)).append(results(2))
    write_structures(tmp_path / "in.h5", [bulk("Cu"), bulk("Au", cubic=True)])
    layouts = {}
    for name, path in (("labels", tmp_path / "labels.h5"), ("relaxed", shard_path(tmp_path, 0)),
                       ("structures", tmp_path / "in.h5")):
        with h5py.File(path, "r") as f:
            assert f.attrs["kind"] == name
            layouts[name] = (sorted(f), {k: f.attrs[k] for k in ("layout", "version")},
                             {k for k in ("n_frames", "column_groups") if k in f.attrs},
                             set(h5frames.REQUIRED) - set(f["frames"]) - set(f["atoms"]))
        assert StructureFile(path).read([1])[0].get_chemical_formula()  # every file is a structure file
    assert layouts["labels"] == layouts["relaxed"] == layouts["structures"] == (
        ["atoms", "frames"], {"layout": "acnn_mpi frames", "version": 2}, {"n_frames", "column_groups"}, set())


@contextmanager
def log_lines(caplog, name):
    """INFO records of logger ``name`` into ``caplog`` (the CLI tests may have stopped the
    package's loggers from propagating)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def make_version_1_store(path, frames):
    """A label store as version 1 wrote it: the same groups and columns, older attributes."""
    with FrameStore(path, "w") as store:
        store.append(frames)
    with h5py.File(path, "a") as f:
        f.attrs["layout"], f.attrs["version"] = "acnn_mpi frame store", 1
        del f.attrs["kind"], f.attrs["column_groups"]


def test_a_version_1_label_store_is_read_and_upgraded_in_place_on_append(tmp_path, caplog):
    frames = emt_frames(6)
    path = tmp_path / "labels.h5"
    make_version_1_store(path, frames[:4])
    with FrameStore(path, "r") as store:
        assert_same_frames(store.read(), frames[:4])
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == 1  # a reader changes nothing
    with log_lines(caplog, "acnn_mpi.data.h5frames"), FrameStore(path, "a") as store:
        store.append(frames[4:])
    assert "frame layout version 1 -> 2" in caplog.text
    with h5py.File(path, "r") as f:
        assert (f.attrs["layout"], f.attrs["version"], json.loads(f.attrs["column_groups"])) == (
            "acnn_mpi frames", 2, ["labels"])
    with FrameStore(path, "r") as store:
        assert_same_frames(store.read(), frames)


def write_flat_shard(path, rows):
    """A relaxation shard as the previous version wrote it (flat datasets, fixed-width text,
    ``committed``), with one uncommitted row at the end."""
    n_atoms = np.array([len(r.atoms) for r in rows])
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "acnn_mpi.relax.shard", "version": 2, "pressure_gpa": 3.0, "rank": 0,
                        "committed": len(rows) - 1, "committed_atoms": int(n_atoms[:-1].sum())})
        f["numbers"] = np.concatenate([r.atoms.numbers for r in rows]).astype(np.int64)
        f["positions"] = np.concatenate([r.atoms.positions for r in rows])
        f["cell"] = np.stack([r.atoms.cell.array for r in rows])
        f["pbc"] = np.ones((len(rows), 3), bool)
        f["n_atoms"] = n_atoms
        f["atom_start"] = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
        for name in ("structure_id", "steps", "energy", "enthalpy", "volume", "max_force",
                     "pressure_residual", "pressure"):
            f[name] = np.array([getattr(r, name) for r in rows])
        f["status"] = np.array([r.status.encode() for r in rows], dtype="S16")
        f["reason"] = np.array([r.reason.encode() for r in rows], dtype="S200")
        f["formula"] = np.array([r.atoms.get_chemical_formula().encode() for r in rows], dtype="S64")
        f["fingerprints"] = np.arange(len(rows) * 6, dtype=np.float32).reshape(-1, 2, 3)


def test_a_previous_version_shard_is_read_and_rewritten_by_a_resumed_rank(tmp_path, caplog):
    rows = results(4)
    path = shard_path(tmp_path, 0)
    (tmp_path / "shards").mkdir()
    write_flat_shard(path, rows)
    old = read_results(tmp_path, columns=("fingerprints",), lazy=True)
    assert old.structure_id.tolist() == [1000, 1001, 1002] and old.pressure_gpa == 3.0
    assert old.status.tolist() == ["converged", "unphysical", "converged"] and old.reason[2] == "why why "
    np.testing.assert_array_equal(old.atoms(2).positions, rows[2].atoms.positions)
    np.testing.assert_array_equal(old.extra["fingerprints"][[1]], [[[6, 7, 8], [9, 10, 11]]])
    assert StructureFile(path).ids.tolist() == [1000, 1001, 1002]
    with log_lines(caplog, "acnn_mpi.relax.shards"):
        writer = ShardWriter(path, pressure_gpa=3.0)
    assert "rewritten in frame layout 2 (3 structures kept)" in caplog.text and writer.committed == 3
    more = results(6, seed=1)[4:]
    writer.append(more, {"fingerprints": np.zeros((2, 2, 3), np.float32)})
    new = read_results(tmp_path, columns=("fingerprints",))
    assert finished_ids(tmp_path).tolist() == [1000, 1001, 1002, 1004, 1005]
    assert new.formula.tolist() == [r.atoms.get_chemical_formula() for r in rows[:3] + more]
    np.testing.assert_array_equal(new.extra["fingerprints"][1], [[6, 7, 8], [9, 10, 11]])
    np.testing.assert_array_equal(new.atoms(4).positions, more[1].atoms.positions)


def test_other_hdf5_files_are_refused_by_name(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    with h5py.File(tmp_path / "other.h5", "r") as f, pytest.raises(DamagedFileError, match="other.h5"):
        h5frames.FrameReader(f)
    new_file(tmp_path / "newer.h5")
    with h5py.File(tmp_path / "newer.h5", "a") as f:
        f.attrs["version"] = 3
    with h5py.File(tmp_path / "newer.h5", "r") as f, pytest.raises(DamagedFileError, match="upgrade acnn_mpi"):
        h5frames.FrameReader(f)


def test_a_flat_structure_file_of_the_previous_version_is_read(tmp_path):
    """The structure file layout the previous version documented for relax inputs: datasets
    numbers, positions, cell, n_atoms at the root (pbc and structure_id optional)."""
    structures = [bulk("Cu", cubic=True), bulk("Au") * (2, 1, 1)]
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f["numbers"] = np.concatenate([a.numbers for a in structures])
        f["positions"] = np.concatenate([a.positions for a in structures])
        f["cell"] = np.stack([a.cell.array for a in structures])
        f["n_atoms"] = [len(a) for a in structures]
    source = StructureFile(tmp_path / "old.h5")
    assert source.ids.tolist() == [0, 1] and source.n_atoms.tolist() == [4, 2]
    back = source.read([1, 0])
    assert back[0].get_chemical_formula() == "Au2" and back[0].pbc.all()
    np.testing.assert_array_equal(back[1].positions, structures[0].positions)
    with h5py.File(tmp_path / "old.h5", "r") as f:  # an unchecked open reads the same rows
        reader = h5frames.FrameReader(f, check=False)
        np.testing.assert_array_equal(reader.read_atoms("numbers", [1]), structures[1].numbers)


def test_an_index_over_old_and_new_shards_reads_every_structure(tmp_path):
    (tmp_path / "shards").mkdir()
    write_flat_shard(shard_path(tmp_path, 1), results(4))  # a rank of the old job that did not resume
    ShardWriter(shard_path(tmp_path, 0)).append(results(6, seed=2)[4:])
    from acnn_mpi.relax.io import open_structures

    source = open_structures(tmp_path)
    assert sorted(source.ids.tolist()) == [1000, 1001, 1002, 1004, 1005]
    assert {a.get_chemical_formula() for a in source.read(range(5))} == {"AuCu3"}
