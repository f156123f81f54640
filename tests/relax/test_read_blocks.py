"""read_results fills each column shard by shard in blocks of rows: the blocks change nothing."""

import numpy as np
import pytest

from acnn_mpi.relax import shards
from acnn_mpi.relax.runner import relax_structures
from acnn_mpi.relax.shards import ShardWriter, read_results, shard_path
from tests.relax.helpers import lj, random_argon


@pytest.fixture(scope="module")
def results():
    structures = random_argon(7, seed=5)
    for k, atoms in enumerate(structures):
        atoms.info["structure_id"] = 100 + k
    return relax_structures(structures, lj(), 1.0, batch_size=7, max_steps=30)


def write(directory, results, fingerprints):
    ShardWriter(shard_path(directory, 0), rank=0, pressure_gpa=1.0).append(results[:4], {"fingerprints": fingerprints[:4]})
    writer = ShardWriter(shard_path(directory, 1), rank=1, pressure_gpa=1.0)
    writer.append(results[4:6], {"fingerprints": fingerprints[4:6]})
    writer.append(results[6:], {"fingerprints": fingerprints[6:]})


@pytest.mark.parametrize("lazy", [False, True])
def test_blocks_of_rows_give_the_same_results(tmp_path, results, monkeypatch, lazy):
    fingerprints = np.random.default_rng(0).random((len(results), 6)).astype(np.float32)
    write(tmp_path, results, fingerprints)
    whole = read_results(tmp_path, columns=("fingerprints",), lazy=lazy)
    monkeypatch.setattr(shards, "_READ_BLOCK", 3)  # shard 0: rows 0-2, 3; shard 1: rows 0-2
    blocks = read_results(tmp_path, columns=("fingerprints",), lazy=lazy)
    assert blocks.structure_id.tolist() == [100 + k for k in range(7)] == whole.structure_id.tolist()
    assert blocks.shard_index.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert blocks.row.tolist() == [0, 1, 2, 3, 0, 1, 2]
    by_id = {r.structure_id: r for r in results}
    for i, sid in enumerate(blocks.structure_id.tolist()):
        assert blocks.enthalpy[i] == by_id[sid].enthalpy == whole.enthalpy[i]
        assert blocks.status[i] == by_id[sid].status and blocks.reason[i] == by_id[sid].reason
        assert blocks.atoms(i).get_chemical_formula() == by_id[sid].atoms.get_chemical_formula()
    np.testing.assert_array_equal(blocks.extra["fingerprints"][np.arange(7)], fingerprints)
    np.testing.assert_array_equal(blocks.atom_start, whole.atom_start)


def test_a_column_only_some_shards_have_is_left_out(tmp_path, results):
    ShardWriter(shard_path(tmp_path, 0), rank=0, pressure_gpa=1.0).append(results[:3], {"fingerprints": np.ones((3, 2))})
    ShardWriter(shard_path(tmp_path, 1), rank=1, pressure_gpa=1.0).append(results[3:])
    data = read_results(tmp_path, columns=("fingerprints",))
    assert len(data) == len(results) and "fingerprints" not in data.extra
