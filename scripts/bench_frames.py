"""The frame layout's reader and writer at scale (CPU seconds of this process):

    python scripts/bench_frames.py [--frames 300000] [--structures 50000]

1. A label store of ``--frames`` EMT frames (1-4 atoms): 32 random frames read (mean of 20), then
   a full scan (``read_arrays()``).
2. A relaxation shard of ``--structures`` MgH2 results appended 64 at a time (each append opens,
   extends, commits and closes the file, as a rank does), then ``read_results(lazy=True)``, the
   fingerprints of every 7th structure, and 1000 structures loaded.

Run it on two checkouts (PYTHONPATH) to compare layouts on the same machine and load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def cpu(function):
    start = time.process_time()
    out = function()
    return time.process_time() - start, out


def bench_store(n: int, directory: str) -> str:
    from acnn_mpi.data.frames import FrameArrays
    from acnn_mpi.data.store import FrameStore
    from tests.data.helpers import emt_frames

    base = FrameArrays.from_atoms(emt_frames(8, stress_every=2), source="bench")
    arrays = base.take(np.random.default_rng(0).integers(0, 8, n))
    path = os.path.join(directory, "labels.h5")
    with FrameStore(path, "w") as store:
        store.append_arrays(arrays)
    rng = np.random.default_rng(1)
    with FrameStore(path, "r") as store:
        random_s, _ = cpu(lambda: [store.read_arrays(rng.integers(0, n, 32)) for _ in range(20)])
        full_s, _ = cpu(store.read_arrays)
    return f"label store, {n} frames: 32 random frames {1000 * random_s / 20:.1f} ms, full scan {full_s:.2f} s"


def bench_shard(n: int, directory: str) -> str:
    from ase import Atoms

    from acnn_mpi.relax.runner import RelaxResult
    from acnn_mpi.relax.shards import ShardWriter, read_results, shard_path

    rng = np.random.default_rng(2)
    rows = [RelaxResult(atoms=Atoms("MgH2", positions=rng.random((3, 3)) * 3, cell=np.eye(3) * 4, pbc=True),
                        energy=-1.0 * k, enthalpy=-1.0, volume=64.0, steps=k % 100,
                        status=("converged", "unphysical", "not_converged")[k % 3], reason="r" * (k % 7),
                        structure_id=k, max_force=0.1, pressure_residual=0.1, pressure=1.0) for k in range(n)]
    fingerprints = rng.random((n, 3, 20)).astype(np.float32)
    writer = ShardWriter(shard_path(directory, 0))
    write_s, _ = cpu(lambda: [writer.append(rows[s:s + 64], {"fingerprints": fingerprints[s:s + 64]})
                              for s in range(0, n, 64)])
    read_s, results = cpu(lambda: read_results(directory, columns=("fingerprints",), lazy=True))
    rows_s, _ = cpu(lambda: results.extra["fingerprints"][np.arange(0, n, 7)])
    load_s, _ = cpu(lambda: results.load_atoms(np.arange(0, n, max(n // 1000, 1))))
    size = os.path.getsize(shard_path(directory, 0)) / 1e6
    return (f"shard, {n} structures: {-(-n // 64)} appends {write_s:.2f} s, read_results(lazy) {read_s:.2f} s, "
            f"fingerprints of every 7th {rows_s:.2f} s, 1000 structures loaded {load_s:.2f} s, {size:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300000)
    parser.add_argument("--structures", type=int, default=50000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        print(bench_store(args.frames, directory))
    with tempfile.TemporaryDirectory() as directory:
        print(bench_shard(args.structures, directory))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
