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


#: distinct minima per composition in the synthetic landscape, and their enthalpy spread (eV/atom)
MINIMA = 256
SPREAD_EV_PER_ATOM = 0.5


class Landscape:
    """A synthetic energy landscape shared by every rank (same seed): each relaxed structure falls
    into one of ``MINIMA`` minima, whose fingerprint (unit vector) and enthalpy per atom it takes,
    so dedup meets what a campaign gives it (many duplicates of few minima, a few meV/atom apart)
    at the cost of a table look-up."""

    def __init__(self, fingerprint_size: int):
        rng = np.random.default_rng(12345)
        table = rng.normal(size=(MINIMA, fingerprint_size))
        self.fingerprints = (table / np.linalg.norm(table, axis=1, keepdims=True)).astype(np.float32)
        self.h_per_atom = -2.0 + SPREAD_EV_PER_ATOM * rng.random(MINIMA)


class InstantRelaxer:
    """Stands in for BatchRelaxer in a RelaxWorker: every structure finishes at the next step, in
    a random minimum of the landscape (its index kept for the fingerprint column)."""

    def __init__(self, rng, landscape: Landscape):
        self.rng, self.landscape, self.queue, self.n_steps = rng, landscape, [], 0

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
        minimum = self.rng.integers(MINIMA, size=len(done))
        bad = self.rng.random(len(done)) < 0.05
        steps = self.rng.integers(100, 400, size=len(done))
        out = []
        for (atoms, structure_id), k, unphysical, n_steps in zip(done, minimum.tolist(), bad.tolist(),
                                                                 steps.tolist()):
            n = len(atoms)
            out.append(RelaxResult(atoms=atoms, energy=-3.0 * n, enthalpy=n * self.landscape.h_per_atom[k],
                                   volume=4.5 * n, steps=n_steps, status="unphysical" if unphysical else "converged",
                                   reason="H-H 0.31 Å < 0.5 × 0.8 Å" if unphysical else "",
                                   structure_id=structure_id, max_force=1e-3, pressure_residual=0.01,
                                   extra={"minimum": k}))
        return out


def synthetic_chunk(task, rng, templates: dict):
    """(Atoms, structure id) for the chunk's structures: one random Atoms per cell and rank, shared
    by its structures (what is timed is the bookkeeping and the I/O, not making structures)."""
    from ase import Atoms

    out = []
    for _, cell, ids in task.chunk.groups():
        if cell.formula not in templates:
            symbols = [s for s, n in cell.counts for _ in range(n)]
            templates[cell.formula] = Atoms(symbols, positions=rng.random((len(symbols), 3)) * 8,
                                            cell=np.eye(3) * 8, pbc=True)
        out.extend((templates[cell.formula], structure_id) for structure_id in ids)
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
    for symbol, n in (("Mg", 32), ("Ca", 32), ("H", 48)):  # the elemental cells: the model hull is built
        cells.append(Cell(counts=((symbol, n),), formula=f"{symbol}{n}", units=1))
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
    writer = TimedWriter(shards.ShardWriter(shards.shard_path(directory, comm.rank), rank=comm.rank,
                                            pressure_gpa=300.0))

    landscape, templates = Landscape(args.fingerprint_size), {}

    def annotate(results):
        return {"fingerprints": landscape.fingerprints[[r.extra["minimum"] for r in results]]}

    service = RelaxService(InstantRelaxer(rng, landscape), writer, lambda task: synthetic_chunk(task, rng, templates),
                           annotate=annotate, commit_every=args.chunk_size, lookahead=args.chunk_size,
                           rank=comm.rank)
    counted = [0]

    def on_result(task, counts, rank):
        counted[0] += counts["finished"]

    comm.barrier()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summaries = serve(comm, tasks, service, on_result, root_works=False)
    deal_cpu, deal_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    write_s = comm.gather((writer.cpu_s, writer.wall_s))
    return plan_cpu, deal_cpu, deal_wall, summaries, write_s


#: (stage, max RSS in bytes at its end) on this rank
PEAKS: list = []


def max_rss() -> int:
    """Bytes: the process's peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def held_bytes(*objects) -> int:
    """Bytes of the numpy arrays the objects (dataclasses, dicts, bound methods) hold, one level
    down, each array counted once: what the root keeps of the iteration."""
    seen, total = set(), 0
    for obj in objects:
        obj = getattr(obj, "__self__", obj)
        values = obj.values() if isinstance(obj, dict) else vars(obj).values() if hasattr(obj, "__dict__") else [obj]
        for value in values:
            for array in (value, getattr(value, "__self__", None)):
                if isinstance(array, np.ndarray) and id(array) not in seen:
                    seen.add(id(array))
                    total += array.nbytes
    return total


def processing_stage(comm, directory: Path):
    """Read the iteration lazily and dedup sharded over ranks; the root's CPU s and what it holds."""
    from acnn_mpi.campaign.processing import _model_hull, composition_keys, distinct_on_ranks
    from acnn_mpi.config import CampaignConfig
    from acnn_mpi.csp.export import read_relax_results

    config = CampaignConfig(elements=["Mg", "Ca", "H"], pressure=300.0)
    cpu0 = time.process_time()
    results = read_relax_results(directory, 300.0, config.elements, columns=("fingerprints",), lazy=True)
    read_cpu = time.process_time() - cpu0
    PEAKS.append(("read", max_rss()))
    keys = composition_keys(results, config.elements)
    cpu1 = time.process_time()
    h_per_atom = results.enthalpy / results.n_atoms
    distinct = distinct_on_ranks(comm, config, results, keys, h_per_atom)
    PEAKS.append(("dedup", max_rss()))
    if comm.is_root:  # the root's model hull of the iteration (its peak memory counts too)
        _model_hull(config, results, keys, h_per_atom, results.physical & results.converged, 1)
    PEAKS.append(("model hull", max_rss()))
    dedup_cpu = time.process_time() - cpu1
    held = held_bytes(results, results.load, results.load.__self__.extra) + keys.nbytes + h_per_atom.nbytes
    return len(results), read_cpu, dedup_cpu, held, distinct


class TimedWriter:
    """A shard writer that adds up the CPU seconds its appends take in the calling thread (HDF5
    and the kernel's share of the writes: the file system's share of a rank) and their wall
    seconds (inflated by waiting for a core when oversubscribed)."""

    def __init__(self, writer):
        self.writer, self.cpu_s, self.wall_s = writer, 0.0, 0.0

    def append(self, results, extra=None):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = self.writer.append(results, extra)
        self.cpu_s += time.thread_time() - c0
        self.wall_s += time.perf_counter() - t0
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=20000)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--fingerprint-size", type=int, default=360, help="6 pairs × 60 bins (ternary)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    import h5py  # noqa: F401  the libraries are loaded before measuring: not per structure
    import pymatgen.analysis.phase_diagram  # noqa: F401
    import pymatgen.analysis.structure_matcher  # noqa: F401

    import acnn_mpi.campaign.processing  # noqa: F401
    import acnn_mpi.csp.export  # noqa: F401
    import acnn_mpi.relax.service  # noqa: F401
    from acnn_mpi.parallel.comm import get_world

    comm = get_world()
    root_dir = comm.bcast(args.dir or tempfile.mkdtemp(prefix="bench_scale_") if comm.is_root else None)
    directory = Path(root_dir) / "iter_001" / "relax"
    rss0 = max_rss()
    plan_cpu, deal_cpu, deal_wall, summaries, write_s = csp_stage(comm, args, directory)
    rss_csp = max_rss()
    wall0 = time.perf_counter()
    n, read_cpu, dedup_cpu, held, distinct = processing_stage(comm, directory)
    processing_wall = time.perf_counter() - wall0
    if not comm.is_root:
        return 0
    report(args, comm, directory, n, distinct, (plan_cpu, deal_cpu, read_cpu, dedup_cpu), (deal_wall, processing_wall),
           held, (rss_csp - rss0, max_rss() - rss0, [(stage, peak - rss0) for stage, peak in PEAKS]), write_s)
    return 0


def report(args, comm, directory, n, distinct, cpu, wall, held, rss, write_s) -> None:
    """Print the figures (root only)."""
    from acnn_mpi.relax import shards

    plan_cpu, deal_cpu, read_cpu, dedup_cpu = cpu
    files = shards.list_shards(directory)
    disk = sum(Path(p).stat().st_size for p in files)
    root_cpu = sum(cpu)
    write_per_structure = sum(c for c, _ in write_s) / n
    write_wall = sum(w for _, w in write_s) / n
    print(f"machine: {machine_line()}; {comm.size} ranks (oversubscribed: {comm.size} ranks on the cores above)")
    print(f"{n} structures in {len(files)} shard files (ranks: {comm.size}; ≤ 2 × ranks: "
          f"{len(files) <= 2 * comm.size}); {disk / n / 1024:.2f} KiB per structure on disk; "
          f"{int(distinct.sum())} distinct after dedup")
    print(f"root CPU s: plan {plan_cpu:.2f}, deal {deal_cpu:.2f} (wall {wall[0]:.1f}), read {read_cpu:.2f}, "
          f"dedup share, merge and model hull {dedup_cpu:.2f} (processing wall {wall[1]:.1f}); "
          f"{1e6 * root_cpu / n:.1f} µs per structure")
    print(f"root memory: arrays held after processing {held / n:.0f} B per structure; max RSS grew "
          f"{rss[0] / 2**20:.0f} MiB in plan + deal, {rss[1] / 2**20:.0f} MiB by the end = {rss[1] / n:.0f} B per "
          f"structure = {rss[1] / n * 1e6 / 2**30:.3f} GiB per million (by the end of "
          + ", ".join(f"{stage} {peak / 2**20:.0f}" for stage, peak in rss[2]) + " MiB)")
    print(f"shard appends on the ranks: {1e6 * write_per_structure:.0f} CPU-µs per structure "
          f"({1e6 * write_wall:.0f} µs wall, oversubscribed)")
    for ranks in (192, 1000):
        iteration_s = 1e6 / (ranks * PAPER_RATE / 3600.0)
        root_s = 1e6 * root_cpu / n
        fs_share = write_per_structure / (3600.0 / PAPER_RATE)
        print(f"10^6 structures on {ranks} ranks: an iteration takes {iteration_s / 3600:.1f} h at "
              f"{PAPER_RATE:.0f} structures per core-hour; the root's share {root_s:.0f} s = "
              f"{100 * root_s / iteration_s:.2f} %; shard writes {100 * fs_share:.3f} % of each rank's time "
              f"({ranks} shard files)")


if __name__ == "__main__":
    sys.exit(main())
