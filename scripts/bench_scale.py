"""The campaign's root and file system at scale: the real CSP-stage path (plan, dealer, relaxation
service, one shard per rank, processing on all ranks) with an instant stand-in relaxer.

Run under MPI, oversubscribed if needed (the relaxer does nothing, so what is timed is the root's
dealing and bookkeeping, the ranks' shard writes and the processing stage):

    mpiexec -n 4 python scripts/bench_scale.py --structures 20000

Each task is a chunk of a real plan (campaign.plan.plan_chunks over Mg-Ca-H cells of 30-60
atoms); the rank makes synthetic relaxed structures for it (generation is not timed here: see
bench_generate.py) and its RelaxService commits them with random fingerprints to its shard. Then
every rank reads the iteration as the processing stage does (lazy fingerprints and reasons),
dedup runs sharded by composition, and the root's memory and time per stage are measured.

Reported: files per iteration, the root's CPU seconds per stage and per structure, the root's
memory per structure (arrays it holds, and max RSS growth), and the extrapolation to 10⁶
structures on 192 and 1,000 ranks at the paper's 474 structures per core-hour.
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

PAPER_RATE = 474.0  # structures per core-hour (paper, Mg-Ca-H at 300 GPa)


class InstantRelaxer:
    """Stands in for BatchRelaxer in a RelaxWorker: every structure finishes at the next step."""

    def __init__(self, rng):
        self.rng, self.queue, self.n_steps = rng, [], 0

    n_active = property(lambda self: 0)
    n_queued = property(lambda self: len(self.queue))
    idle = property(lambda self: not self.queue)

    def submit(self, structures):
        self.queue.extend(structures)

    def fill(self):
        pass

    def step(self):
        from acnn_mpi.relax.runner import RelaxResult

        done, self.queue = self.queue, []
        self.n_steps += 1
        out = []
        for atoms in done:
            n = len(atoms)
            status = "converged" if self.rng.random() > 0.05 else "unphysical"
            out.append(RelaxResult(atoms=atoms, energy=-3.0 * n, enthalpy=-2.0 * n + self.rng.random(),
                                   volume=4.5 * n, steps=int(self.rng.integers(100, 400)), status=status,
                                   reason="" if status == "converged" else "H-H 0.31 Å < 0.5 × 0.8 Å",
                                   structure_id=int(atoms.info["structure_id"]), max_force=1e-3,
                                   pressure_residual=0.01))
        return out


def synthetic_chunk(task, rng):
    from ase import Atoms

    out = []
    for _, cell, ids in task.chunk.groups():
        symbols = [s for s, n in cell.counts for _ in range(n)]
        for structure_id in ids:
            atoms = Atoms(symbols, positions=rng.random((len(symbols), 3)) * 8, cell=np.eye(3) * 8, pbc=True)
            atoms.info["structure_id"] = structure_id
            out.append(atoms)
    return out


def mgcah_cells():
    from acnn_mpi.campaign.plan import Cell

    cells = []
    for mg in range(0, 3):
        for ca in range(0, 3):
            for h in (2, 6, 12, 24, 40):
                if mg + ca and 30 <= mg + ca + h + 24 <= 64:
                    counts = tuple((s, n) for s, n in (("Mg", mg), ("Ca", ca), ("H", h + 24)) if n)
                    formula = "".join(f"{s}{n}" for s, n in counts)
                    cells.append(Cell(counts=counts, formula=formula, units=1))
    return cells


def csp_stage(comm, args, directory: Path):
    """Plan, deal and commit one iteration; the root's CPU seconds."""
    from acnn_mpi.campaign.csp_stage import CSPTask
    from acnn_mpi.campaign.plan import plan_chunks
    from acnn_mpi.relax import shards
    from acnn_mpi.relax.service import RelaxService, serve

    rng = np.random.default_rng(comm.rank)
    cpu0 = time.process_time()
    tasks = None
    if comm.is_root:
        chunks = plan_chunks(mgcah_cells(), 1, args.structures, args.chunk_size, 0)
        tasks = [CSPTask(chunk=c) for c in chunks]
    plan_cpu = time.process_time() - cpu0
    writer = shards.ShardWriter(shards.shard_path(directory, comm.rank), rank=comm.rank, pressure_gpa=300.0)

    def annotate(results):
        return {"fingerprints": rng.random((len(results), args.fingerprint_size)).astype(np.float32)}

    service = RelaxService(InstantRelaxer(rng), writer, lambda task: synthetic_chunk(task, rng),
                           annotate=annotate, commit_every=args.chunk_size, lookahead=args.chunk_size,
                           rank=comm.rank)
    counted = [0]

    def on_result(task, counts, rank):
        counted[0] += counts["finished"]

    comm.barrier()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summaries = serve(comm, tasks, service, on_result, root_works=False)
    return plan_cpu, time.process_time() - cpu0, time.perf_counter() - wall0, summaries


def processing_stage(comm, directory: Path):
    """Read the iteration lazily and dedup sharded over ranks; the root's CPU s and memory."""
    from acnn_mpi.campaign.processing import composition_keys, distinct_on_ranks
    from acnn_mpi.config import CampaignConfig
    from acnn_mpi.csp.export import read_relax_results

    import pymatgen.analysis.structure_matcher  # noqa: F401  imported before measuring: not per structure

    config = CampaignConfig(elements=["Mg", "Ca", "H"], pressure=300.0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    results = read_relax_results(directory, 300.0, config.elements, columns=("fingerprints",), lazy=True)
    read_cpu = time.process_time() - cpu0
    keys = composition_keys(results, config.elements)
    cpu1 = time.process_time()
    distinct = distinct_on_ranks(comm, config, results, keys, results.enthalpy / results.n_atoms)
    dedup_cpu = time.process_time() - cpu1
    held = sum(np.asarray(getattr(results, n)).nbytes for n in ("ids", "counts", "enthalpy", "volume",
                                                               "converged", "physical", "status", "steps"))
    held += keys.nbytes + sum(a.nbytes for a in (results.load.__self__.shard_index, results.load.__self__.row,
                                                 results.load.__self__.atom_start, results.load.__self__.n_atoms))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    return len(results), read_cpu, dedup_cpu, held, rss, distinct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=20000)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--fingerprint-size", type=int, default=360, help="6 pairs × 60 bins (ternary)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    from acnn_mpi.parallel.comm import get_world
    from acnn_mpi.relax import shards

    comm = get_world()
    root_dir = comm.bcast(args.dir or tempfile.mkdtemp(prefix="bench_scale_") if comm.is_root else None)
    directory = Path(root_dir) / "iter_001" / "relax"
    plan_cpu, deal_cpu, deal_wall, summaries = csp_stage(comm, args, directory)
    n, read_cpu, dedup_cpu, held, rss, distinct = processing_stage(comm, directory)
    if not comm.is_root:
        return 0
    files = len(shards.list_shards(directory))
    disk = sum(Path(p).stat().st_size for p in shards.list_shards(directory))
    root_cpu = plan_cpu + deal_cpu + read_cpu + dedup_cpu
    print(f"machine: {machine_line()}; {comm.size} ranks (oversubscribed: {comm.size} ranks on the cores above)")
    print(f"{n} structures in {files} shard files (ranks: {comm.size}; ≤ 2 × ranks: {files <= 2 * comm.size}); "
          f"{disk / n / 1024:.2f} KiB per structure on disk")
    print(f"root CPU s: plan {plan_cpu:.2f}, deal+commit bookkeeping {deal_cpu:.2f} (wall {deal_wall:.2f}), "
          f"read {read_cpu:.2f}, dedup share {dedup_cpu:.2f}; {1e6 * root_cpu / n:.1f} µs per structure")
    print(f"root memory: arrays held {held / n:.0f} B per structure = {held / n * 1e6 / 2**30:.3f} GiB per "
          f"million; max RSS grew {rss / 1024:.0f} MiB in processing ({rss * 1024 / n:.0f} B per structure)")
    for ranks in (192, 1000):
        iteration_s = 1e6 / (ranks * PAPER_RATE / 3600.0)
        root_s = 1e6 * root_cpu / n
        print(f"10^6 structures on {ranks} ranks: an iteration takes {iteration_s / 3600:.1f} h at "
              f"{PAPER_RATE:.0f} structures per core-hour; the root's share {root_s:.0f} s = "
              f"{100 * root_s / iteration_s:.2f} % (files: {ranks} shards)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
