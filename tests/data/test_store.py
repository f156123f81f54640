"""FrameStore: exact append/read round trip, random access, batches, chunked reading, metadata,
and crash safety (an append is all or nothing as far as readers can tell)."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch

from acnn_mpi import keys
from acnn_mpi.data.frames import FrameArrays
from acnn_mpi.data.store import COMMITTED, FrameStore
from acnn_mpi.errors import UserError
from tests.conftest import REPO
from tests.data.helpers import assert_same_frames, emt_frames


def test_round_trip_is_exact(tmp_path, frames):
    path = tmp_path / "labels.h5"
    with FrameStore(path, "w") as store:
        store.append(frames[:3], source="emt", iteration=2, labeller="EMT", tags="first")
        store.append(frames[3:], source="more", iteration=3)
        assert len(store) == 8
    with FrameStore(path, "r") as store:
        got = store.read()
        assert len(store) == 8 and store.n_atoms == sum(len(a) for a in frames)
    assert_same_frames(got, frames, atol=0.0)
    assert got[0].info == {"source": "emt", "iteration": 2, "labeller": "EMT", "tags": "first",
                           "structure_id": 100}
    assert got[3].info == {"source": "more", "iteration": 3}
    # frames without stress come back without it; frames with it keep the ASE (Voigt) values
    assert "stress" not in got[1].calc.results
    np.testing.assert_array_equal(got[2].get_stress(), frames[2].get_stress())
    with FrameStore(path, "r") as store:
        assert store.column(keys.STRUCTURE_ID).tolist() == [100, -1, 102, -1, 104, -1, 106, -1]
        assert list(store.column("formula")) == ["Cu", "Au", "Al", "AuCu3"] * 2
        assert store.select(source="more", iteration=3).tolist() == [3, 4, 5, 6, 7]


def test_info_supplies_metadata_when_not_given(tmp_path, frames):
    frames[0].info.update(source="from-info", iteration=7, labeller="vasp", tags="x")
    with FrameStore(tmp_path / "s.h5") as store:
        store.append(frames[:2])
        first, second = store.read()
    assert first.info == {"source": "from-info", "iteration": 7, "labeller": "vasp", "tags": "x",
                          "structure_id": 100}
    assert second.info == {"iteration": 0}


def test_random_access_order_and_repeats(tmp_path, frames):
    with FrameStore(tmp_path / "s.h5") as store:
        store.append(frames)
        order = [5, 0, 5, -1, 2]
        assert_same_frames(store.read(order), [frames[i] for i in order])
        assert store[3].get_potential_energy() == frames[3].get_potential_energy()
        assert store.read([]) == []
        with pytest.raises(IndexError, match="frame index 8 out of range"):
            store.read([0, 8])


def test_scattered_reads_in_a_larger_store(tmp_path):
    """Every read strategy (one slice, one listed read, slices of nearby ranges) returns the
    frames asked for: compared with the same frames taken from the arrays in memory."""
    base = FrameArrays.from_atoms(emt_frames(8, stress_every=2), source="s")
    rng = np.random.default_rng(5)
    arrays = base.take(rng.integers(0, 8, 6000))
    arrays.energy = arrays.energy + np.arange(6000)  # every frame distinct
    arrays.iteration = np.arange(6000)
    with FrameStore(tmp_path / "s.h5") as store:
        store.append_arrays(arrays)
        for size in (1, 10, 300, 2000):
            indices = rng.integers(0, 6000, size)
            got, want = store.read_arrays(indices), arrays.take(indices)
            for name in FrameArrays.per_frame_names() + FrameArrays.PER_ATOM:
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert store.column("iteration", [5999, 3, 4000]).tolist() == [5999, 3, 4000]


def test_batch_tensors(tmp_path, frames):
    with FrameStore(tmp_path / "s.h5") as store:
        store.append(frames)
        batch, targets = store.batch([3, 0, 1], dtype=torch.float32)
    chosen = [frames[3], frames[0], frames[1]]
    assert batch.n_atoms.tolist() == [len(a) for a in chosen]
    assert batch.positions.dtype == torch.float32 and batch.numbers.dtype == torch.long
    assert batch.system_idx.tolist() == sum(([k] * len(a) for k, a in enumerate(chosen)), [])
    np.testing.assert_allclose(batch.cell.numpy(), np.stack([a.cell.array for a in chosen]), rtol=1e-6)
    np.testing.assert_allclose(targets[keys.ENERGY].numpy(),
                               [a.get_potential_energy() for a in chosen], rtol=1e-6)
    np.testing.assert_allclose(targets[keys.FORCES].numpy(),
                               np.concatenate([a.get_forces() for a in chosen]), atol=1e-6)
    assert targets["has_stress"].tolist() == [False, True, False]
    np.testing.assert_allclose(targets[keys.STRESS][1].numpy(),
                               frames[0].get_stress(voigt=False), atol=1e-7)
    assert torch.all(targets[keys.STRESS][0] == 0)  # not labelled: zeros, masked by has_stress


def test_chunked_iteration_is_lazy_and_complete(tmp_path):
    frames = emt_frames(40, stress_every=3)
    path = tmp_path / "s.h5"
    with FrameStore(path) as store:
        for start in range(0, 40, 7):  # many small appends
            store.append(frames[start:start + 7], iteration=start // 7)
    with FrameStore(path, "r") as store:
        chunks = store.iter_arrays(chunk_size=16)
        first = next(chunks)  # only the first chunk has been read
        assert isinstance(first, FrameArrays) and len(first) == 16
        rest = list(chunks)
        assert [len(c) for c in rest] == [16, 8]
        assert_same_frames(first.to_atoms() + [a for c in rest for a in c.to_atoms()], frames)
        assert_same_frames(list(store.iter_frames(chunk_size=5)), frames)
        subset = [39, 1, 20]
        assert_same_frames(list(store.iter_frames(chunk_size=2, indices=subset)),
                           [frames[i] for i in subset])
        meta = store.metadata(chunk_size=8)
    assert meta["frames"] == 40 and meta["atoms"] == sum(len(a) for a in frames)
    assert meta["elements"] == ["Al", "Cu", "Au"]  # by atomic number
    assert meta["by_iteration"] == {0: 7, 1: 7, 2: 7, 3: 7, 4: 7, 5: 5}
    assert meta["with_stress"] == 14
    assert meta["by_formula"] == {"Al": 10, "Au": 10, "AuCu3": 10, "Cu": 10}


def test_partial_append_is_invisible_and_cut_off(tmp_path, frames):
    """A writer dies after writing the datasets but before raising the committed count."""
    path = tmp_path / "s.h5"
    with FrameStore(path) as store:
        store.append(frames[:3])
        store._write(FrameArrays.from_atoms(frames[3:6]))  # data written, never committed
    with h5py.File(path, "r") as f:
        assert f.attrs[COMMITTED] == 3 and f["frames/energy"].shape[0] == 6
    with FrameStore(path, "r") as store:  # readers ignore the tail
        assert len(store) == 3
        assert_same_frames(store.read(), frames[:3])
    with FrameStore(path, "a") as store:  # a writer cuts it off and appends after it
        assert len(store) == 3
        store.append(frames[6:])
    with h5py.File(path, "r") as f:
        assert f["frames/energy"].shape[0] == 5
        assert f["atoms/positions"].shape[0] == sum(len(a) for a in frames[:3] + frames[6:])
    with FrameStore(path, "r") as store:
        assert_same_frames(store.read(), frames[:3] + frames[6:])


def test_killed_writer(tmp_path):
    """A real process killed (os._exit) in the middle of an append."""
    path = tmp_path / "s.h5"
    script = textwrap.dedent(f"""
        import os
        from acnn_mpi.data.frames import FrameArrays
        from acnn_mpi.data.store import FrameStore
        from tests.data.helpers import emt_frames
        frames = emt_frames(6)
        store = FrameStore({str(path)!r})
        store.append(frames[:2])
        store._write(FrameArrays.from_atoms(frames[2:]))
        store.file.flush()
        os._exit(9)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 9, result.stderr
    frames = emt_frames(6)
    with FrameStore(path) as store:
        assert len(store) == 2
        store.append(frames[4:])
    with FrameStore(path, "r") as store:
        assert_same_frames(store.read(), frames[:2] + frames[4:])


def test_transaction_commits_at_end_or_not_at_all(tmp_path, frames):
    path = tmp_path / "s.h5"
    with FrameStore(path) as store:
        store.append(frames[:1])
        with pytest.raises(RuntimeError, match="boom"):
            with store.transaction():
                store.append(frames[1:4])
                assert len(store) == 1  # not visible before the end
                raise RuntimeError("boom")
        assert len(store) == 1
        with store.transaction():
            store.append(frames[1:4])
            store.append(frames[4:])
        assert len(store) == 8
    with FrameStore(path, "r") as store:
        assert_same_frames(store.read(), frames)


def test_open_errors(tmp_path, frames):
    with pytest.raises(UserError, match="no such frame store"):
        FrameStore(tmp_path / "missing.h5", "r")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(UserError, match="not an acnn_mpi frame store"):
        FrameStore(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="cannot open"):
        FrameStore(tmp_path / "text.h5")
    with FrameStore(tmp_path / "s.h5") as store:
        store.append(frames[:1])
    with FrameStore(tmp_path / "s.h5", "r") as store, pytest.raises(ValueError, match="read-only"):
        store.append(frames[1:2])
