"""Campaign directories written before the relaxation service (one HDF5 file per chunk under
iter_K/relax) resume: their structures move into a shard that the CSP stage resumes after and the
processing reads; a directory that holds both kinds stops in one line saying what to do."""

import shutil
from pathlib import Path

import h5py
import numpy as np

from acnn_mpi.campaign.csp_stage import read_iteration_results
from acnn_mpi.campaign.layout import CampaignPaths
from acnn_mpi.campaign.legacy import OLD_CHUNKS, upgrade_relax_dirs
from acnn_mpi.campaign.state import CampaignState, save_state
from acnn_mpi.relax.shards import ShardWriter, finished_ids, list_shards, shard_path
from tests.data.test_h5frames import results

TINY = Path(__file__).with_name("tiny.yaml")


def write_old_chunk(path, rows, fingerprints):
    """A chunk file as the CSP stage wrote it before the relaxation service (no pbc, formula,
    measured pressure; variable-length text)."""
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "acnn_mpi relaxed chunk", "iteration": 1, "chunk": 0})
        f["structure_id"] = np.array([r.structure_id for r in rows], dtype=np.int64)
        f["status"] = np.array([r.status for r in rows], dtype=object).astype(text)
        f["reason"] = np.array([r.reason for r in rows], dtype=object).astype(text)
        for name in ("energy", "enthalpy", "volume", "max_force", "pressure_residual"):
            f[name] = np.array([getattr(r, name) for r in rows], dtype=np.float64)
        f["steps"] = np.array([r.steps for r in rows], dtype=np.int64)
        f["n_atoms"] = np.array([len(r.atoms) for r in rows], dtype=np.int64)
        f["numbers"] = np.concatenate([r.atoms.numbers for r in rows])
        f["positions"] = np.concatenate([r.atoms.positions for r in rows])
        f["cell"] = np.stack([r.atoms.cell.array for r in rows])
        f["fingerprints"] = fingerprints


def old_campaign(tmp_path, stage="process"):
    paths = CampaignPaths(tmp_path / "c")
    paths.make(1)
    save_state(paths.root, CampaignState(iteration=1, stage=stage))
    rows = results(7)
    fingerprints = np.random.default_rng(1).random((7, 2, 3)).astype(np.float32)
    write_old_chunk(paths.relax_dir(1) / "chunk_0000000.h5", rows[:4], fingerprints[:4])
    write_old_chunk(paths.relax_dir(1) / "chunk_0000001.h5", rows[4:], fingerprints[4:])
    return paths, rows, fingerprints


def test_chunk_files_move_into_a_shard_that_processing_reads(tmp_path):
    paths, rows, fingerprints = old_campaign(tmp_path)
    assert upgrade_relax_dirs(paths, 1, 2.5) == 7
    directory = paths.relax_dir(1)
    assert list_shards(directory) == [shard_path(directory, 0)] and not list(directory.glob("chunk_*"))
    assert len(list((directory / OLD_CHUNKS).glob("chunk_*.h5"))) == 2  # kept
    assert finished_ids(directory).tolist() == [r.structure_id for r in rows]  # the CSP stage skips them
    got = read_iteration_results(paths, 1, ["Cu", "Au"], 2.5)  # what the process stage reads
    assert got.ids.tolist() == [r.structure_id for r in rows]
    np.testing.assert_array_equal(got.enthalpy, [r.enthalpy for r in rows])
    np.testing.assert_array_equal(got.counts, [[3, 1]] * 7)
    assert got.converged.tolist() == [r.status == "converged" for r in rows]
    np.testing.assert_array_equal(got.fingerprints[np.arange(7)], fingerprints)
    np.testing.assert_array_equal(got.load(5).positions, rows[5].atoms.positions)
    assert got.reason[2] == rows[2].reason
    assert upgrade_relax_dirs(paths, 1, 2.5) == 0  # once


def test_an_upgrade_killed_before_moving_the_chunk_files_is_finished_without_copies(tmp_path):
    paths, rows, _ = old_campaign(tmp_path)
    directory = paths.relax_dir(1)
    upgrade_relax_dirs(paths, 1, 2.5)
    for chunk in (directory / OLD_CHUNKS).glob("chunk_*.h5"):  # as if killed after the shard's rename
        shutil.copy(chunk, directory / chunk.name)
    assert upgrade_relax_dirs(paths, 1, 2.5) == 7
    assert finished_ids(directory).tolist() == [r.structure_id for r in rows]
    with h5py.File(shard_path(directory, 0), "r") as f:
        assert f.attrs["n_frames"] == 7


def test_chunk_files_beside_shards_stop_the_run_in_one_line(tmp_path, acnn):
    paths, rows, _ = old_campaign(tmp_path)
    ShardWriter(shard_path(paths.relax_dir(1), 1)).append(results(2, seed=3))
    result = acnn(["run", TINY, "--output-dir", paths.root], timeout=300)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(paths.relax_dir(1)) in errors[0] and "earlier acnn_mpi" in errors[0] and "mv " in errors[0]
