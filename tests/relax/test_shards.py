"""HDF5 shards: round trip, crash-safe commits, unreadable files skipped, one index over all."""

import os

import h5py
import numpy as np
import pytest

from acnn_mpi.relax.io import StructureFile, open_structures, write_structures
from acnn_mpi.relax.runner import relax_structures
from acnn_mpi.errors import UserError
from acnn_mpi.relax.shards import (ShardWriter, claim, file_digest, finished_ids, list_shards, read_results,
                                   shard_path, write_index)
from tests.relax.helpers import lj, random_argon


@pytest.fixture(scope="module")
def results():
    structures = random_argon(5, seed=4)
    for k, atoms in enumerate(structures):
        atoms.info["structure_id"] = 10 * k
    return relax_structures(structures, lj(), 1.0, batch_size=5, max_steps=40)


def test_round_trip_and_index(tmp_path, results):
    ShardWriter(shard_path(tmp_path, 0), rank=0, pressure_gpa=1.0).append(results[:3])
    ShardWriter(shard_path(tmp_path, 1), rank=1, pressure_gpa=1.0).append(results[3:])
    data = read_results(tmp_path)
    assert sorted(data.structure_id.tolist()) == [0, 10, 20, 30, 40]
    assert data.pressure_gpa == 1.0
    by_id = {r.structure_id: r for r in results}
    for i in range(len(data)):
        r = by_id[int(data.structure_id[i])]
        assert data.status[i] == r.status and data.reason[i] == r.reason
        assert data.enthalpy[i] == r.enthalpy and data.steps[i] == r.steps
        atoms = data.atoms(i)
        np.testing.assert_array_equal(atoms.positions, r.atoms.positions)
        np.testing.assert_array_equal(atoms.cell.array, r.atoms.cell.array)
        assert data.formula[i] == r.atoms.get_chemical_formula()
    assert set(data.summary()) <= {"converged", "not_converged"}
    index = write_index(tmp_path)
    here = os.getcwd()
    try:
        os.chdir("/")  # the virtual datasets resolve shard paths relative to the index file
        with h5py.File(index) as f:
            assert sorted(f["frames/structure_id"][:].tolist()) == [0, 10, 20, 30, 40]
            start, n = f["frames/atom_offset"][4], f["frames/n_atoms"][4]
            sid = int(f["frames/structure_id"][4])
            np.testing.assert_array_equal(f["atoms/positions"][start:start + n], by_id[sid].atoms.positions)
    finally:
        os.chdir(here)
    # a shard is itself a structure file (re-relax the results)
    source = StructureFile(shard_path(tmp_path, 0))
    assert len(source) == 3 and source.read([2])[0].info["structure_id"] == results[2].structure_id


def test_uncommitted_rows_and_broken_files_are_ignored(tmp_path, results):
    path = shard_path(tmp_path, 0)
    writer = ShardWriter(path, rank=0)
    writer.append(results[:2])
    with h5py.File(path, "a") as f:  # a crash after writing rows but before the commit
        for name in ("frames/structure_id", "frames/enthalpy"):
            f[name].resize(3, axis=0)
            f[name][2] = 99
    broken = shard_path(tmp_path, 1)
    with open(broken, "wb") as handle:
        handle.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a file killed while being created
    assert finished_ids(tmp_path).tolist() == sorted([results[0].structure_id, results[1].structure_id])
    assert len(read_results(tmp_path)) == 2
    write_index(tmp_path)


def test_a_resumed_rank_continues_its_shard_after_the_last_commit(tmp_path, results):
    path = shard_path(tmp_path, 0)
    ShardWriter(path).append(results[:2], {"fingerprints": np.ones((2, 3), np.float32)})
    with h5py.File(path, "a") as f:  # killed after writing a row, before raising `committed`
        f["frames/structure_id"].resize(3, axis=0)
        f["frames/structure_id"][2] = 99
    resumed = ShardWriter(path)
    assert resumed.committed == 2
    resumed.append(results[2:4], {"fingerprints": 2 * np.ones((2, 3), np.float32)})
    data = read_results(tmp_path, columns=("fingerprints",))
    assert data.structure_id.tolist() == [r.structure_id for r in results[:4]]  # 99 overwritten
    np.testing.assert_array_equal(data.extra["fingerprints"][:, 0], [1, 1, 2, 2])
    np.testing.assert_array_equal(data.atoms(3).positions, results[3].atoms.positions)
    assert list_shards(tmp_path) == [path]  # one file per rank, however often it resumed


def test_a_damaged_shard_is_moved_aside_and_its_structures_redone(tmp_path, results):
    path = shard_path(tmp_path, 0)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert len(finished_ids(tmp_path)) == 0
    writer = ShardWriter(path)
    assert os.path.exists(path + ".damaged") and writer.committed == 0
    writer.append(results[:1])
    assert finished_ids(tmp_path).tolist() == [results[0].structure_id]


def test_other_settings_or_model_content_are_refused_by_name(tmp_path, results):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights A")
    settings = {"model_sha256": file_digest(model), "fmax": 0.01, "pressure_gpa": 1.0}
    claim(tmp_path, settings, "DIR")
    claim(tmp_path, settings, "DIR")  # nothing committed yet: anything goes
    ShardWriter(shard_path(tmp_path, 0)).append(results[:1])
    claim(tmp_path, dict(settings), "DIR")  # the same job resumes
    model.write_bytes(b"weights B")  # another model at the same path
    with pytest.raises(UserError, match="model_sha256 was"):
        claim(tmp_path, {**settings, "model_sha256": file_digest(model)}, "DIR")
    with pytest.raises(UserError, match="fmax was 0.01, now 0.02"):
        claim(tmp_path, {**settings, "fmax": 0.02}, "DIR")


def test_structure_files(tmp_path):
    from ase.io import write

    structures = random_argon(3, seed=9)
    write(tmp_path / "in.xyz", structures)
    source = open_structures(tmp_path / "in.xyz", tmp_path)
    assert source.path == str(tmp_path / "input.h5") and len(source) == 3
    back = source.read([2, 0])
    np.testing.assert_allclose(back[0].positions, structures[2].positions, atol=1e-6)  # text precision
    assert [a.info["structure_id"] for a in back] == [2, 0]
    structures[1].info["structure_id"] = structures[2].info["structure_id"] = 7
    with pytest.raises(ValueError, match="not unique"):
        write_structures(tmp_path / "dup.h5", [structures[1], structures[2]])
    assert not os.path.exists(tmp_path / "dup.h5")
