"""The campaign controller's overhead at scale: can one root keep 192 ranks busy?

Run under MPI, oversubscribed if needed (the workers do almost nothing, so what is timed is the
root's dispatch and bookkeeping and the workers' HDF5 writes):

    mpiexec -n 8 python scripts/bench_scale.py --chunks 400 --chunk-size 16

Each task is a real CSP chunk of the campaign code path (campaign.csp_stage.write_chunk) holding
synthetic relaxed structures of ~40 atoms (Mg-Ca-H-like sizes), dealt by parallel.tasks.run_dynamic
with the controller's per-chunk bookkeeping on the root. Then the root reads every chunk back as the
processing stage does (read_iteration_results) to measure its memory per structure.

Reported: root dispatch + bookkeeping time per structure (from a run whose workers only write files,
so it is an upper bound), HDF5 write rate per worker, root read-back rate and memory per million
structures, and the extrapolation to 192 ranks at the paper's 474 structures per core-hour.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import machine_line  # noqa: E402  (scripts/ is on sys.path)


class _Atoms:
    """Just enough of ase.Atoms for write_chunk."""

    def __init__(self, numbers, positions, cell):
        self.numbers, self.positions, self.cell = numbers, positions, cell

    def __len__(self):
        return len(self.numbers)


class _Result:
    def __init__(self, structure_id, rng):
        n = int(rng.integers(30, 60))
        self.atoms = _Atoms(rng.choice([1, 12, 20], size=n), rng.random((n, 3)) * 8, np.eye(3) * 8)
        self.structure_id = structure_id
        self.status = "converged" if rng.random() > 0.05 else "unphysical"
        self.reason = "" if self.status == "converged" else "H-H 0.31 Å < 0.5 × 0.8 Å"
        self.energy, self.enthalpy, self.volume = -3.0 * n, -2.0 * n, 4.5 * n
        self.max_force, self.pressure_residual, self.steps = 1e-3, 0.01, int(rng.integers(100, 400))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--fingerprint-size", type=int, default=360, help="6 pairs × 60 bins (ternary)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    from acnn_mpi.campaign.csp_stage import ChunkSummary, read_iteration_results, write_chunk
    from acnn_mpi.campaign.layout import CampaignPaths
    from acnn_mpi.campaign.plan import Cell, plan_chunks
    from acnn_mpi.parallel.comm import get_world
    from acnn_mpi.parallel.tasks import run_dynamic

    comm = get_world()
    root_dir = comm.bcast(args.dir or tempfile.mkdtemp(prefix="bench_scale_") if comm.is_root else None)
    paths = CampaignPaths(Path(root_dir))
    if comm.is_root:
        paths.make(1)
    comm.barrier()
    cell = Cell(counts=(("Mg", 1), ("Ca", 1), ("H", 40)), formula="MgCaH40", units=1)
    chunks = plan_chunks([cell], 1, args.chunks * args.chunk_size, args.chunk_size, 0) if comm.is_root else None

    write_seconds = [0.0]

    def work(chunk):
        rng = np.random.default_rng(chunk.index)
        results = [_Result(i, rng) for i in chunk.ids]
        fingerprints = rng.random((len(results), args.fingerprint_size)).astype(np.float32)
        summary = ChunkSummary(chunk=chunk.index, structures=len(results),
                               unphysical=sum(r.status == "unphysical" for r in results),
                               steps=sum(r.steps for r in results))
        start = time.perf_counter()
        write_chunk(paths.chunk_file(1, chunk.index), chunk, results, fingerprints, summary)
        write_seconds[0] += time.perf_counter() - start
        return summary

    totals = {"structures": 0, "unphysical": 0}
    bookkeeping = [0.0]

    def on_result(chunk, summary, rank):  # what the controller does per chunk
        start = time.perf_counter()
        totals["structures"] += summary.structures
        totals["unphysical"] += summary.unphysical
        bookkeeping[0] += time.perf_counter() - start

    comm.barrier()
    start = time.perf_counter()
    run_dynamic(comm, chunks, work, on_result, root_works=False)
    wall = time.perf_counter() - start
    writes = comm.gather(write_seconds[0])
    if not comm.is_root:
        return 0

    n = totals["structures"]
    files_bytes = sum(p.stat().st_size for p in paths.relax_dir(1).glob("chunk_*.h5"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    results = read_iteration_results(paths, 1, ["Mg", "Ca", "H"], 300.0)
    read_s = time.perf_counter() - start
    array_bytes = sum(getattr(results, name).nbytes for name in ("ids", "counts", "enthalpy", "volume",
                                                                 "converged", "physical", "fingerprints"))
    array_bytes += sum(sys.getsizeof(s) for s in results.reason)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    workers = comm.size - 1
    per_structure = wall / n
    root_rate = n / wall
    needed = 192 * 474 / 3600.0
    print(f"machine: {machine_line()}; {comm.size} ranks ({workers} workers)")
    print(f"dealt {args.chunks} chunks × {args.chunk_size} = {n} structures in {wall:.2f} s")
    print(f"root: {1e3 * per_structure:.3f} ms per structure dispatch + bookkeeping (upper bound: "
          f"includes the workers' own time), {root_rate:,.0f} structures/s; bookkeeping alone "
          f"{1e6 * bookkeeping[0] / n:.2f} µs per structure")
    print(f"HDF5 chunk writes: {n / max(sum(writes[1:]), 1e-9) * workers:,.0f} structures/s per "
          f"worker on average ({files_bytes / n / 1024:.1f} KiB per structure on disk)")
    print(f"root read-back of all chunks: {n / read_s:,.0f} structures/s; arrays "
          f"{array_bytes / n:,.0f} B per structure = {array_bytes / n * 1e6 / 2**30:.2f} GiB per million "
          f"(fingerprints {results.fingerprints.nbytes / n:,.0f} B of it); max RSS grew "
          f"{(rss_after - rss_before) / 1024:.0f} MiB")
    print(f"192 ranks at the paper's 474 structures per core-hour need {needed:.1f} structures/s; "
          f"this root deals {root_rate:,.0f}/s = {root_rate / needed:,.0f}× that "
          f"({'keeps up' if root_rate >= 10 * needed else 'does NOT keep up'} with the 10× margin)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
