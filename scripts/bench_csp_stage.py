"""Campaign CSP-stage throughput against the standalone engine on the same structures.

    mpiexec -n 2 python scripts/bench_csp_stage.py --structures 16 --max-atoms 12

The campaign path: the plan of inputs/mgcah_300gpa.yaml (cells up to ``--max-atoms`` atoms),
dealt by the root, generated on the ranks, relaxed by each rank's RelaxService (one continuously
full batch) into its shard with fingerprints (campaign.csp_stage.make_service). The standalone
engine: relax_structures on the same generated structures, after the campaign run, split over the
same ranks (each rank relaxes every size-th structure in one call, with no dealer, shard or
fingerprints). Model: the paper-size ACNN with RANDOM weights plus r⁻¹² repulsion (bench_relax.py
part 2), at 300 GPa. Rates are structures per CPU-hour (all ranks' CPU time, one torch thread per
rank), so the figures hold on a loaded machine, and per structure-step (paths differ a little:
float32 rounding depends on the batch's composition); generation and fingerprints count against
the campaign, as they do in a campaign, and the generation's share is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench_relax import Repulsive  # noqa: E402  (scripts/ is on sys.path)
from benchlib import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def campaign_config(args):
    from acnn_mpi.config import load_config

    config = load_config(REPO / "inputs" / "mgcah_300gpa.yaml")
    config.compositions.max_atoms_per_cell = args.max_atoms
    config.relax = config.relax.replace(fmax=args.fmax, max_steps=args.max_steps, batch_size=args.batch_size,
                                        chunk_size=args.chunk_size, stress_tol=args.stress_tol)
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=16)
    parser.add_argument("--max-atoms", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--fmax", type=float, default=0.01)
    parser.add_argument("--stress-tol", type=float, default=0.5)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--compile", choices=("off", "cpp", "inductor"), default="off",
                        help="model.compile for both the campaign and the standalone side")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from acnn_mpi.campaign.csp_stage import CSPTask, generate_chunk, make_service
    from acnn_mpi.campaign.layout import CampaignPaths
    from acnn_mpi.campaign.plan import plan_chunks, search_cells
    from acnn_mpi.csp.compositions import compositions_from_config
    from acnn_mpi.model.descriptor import configure_kernels
    from acnn_mpi.model.potential import ACNN, ACNNHyperparameters
    from acnn_mpi.parallel.comm import get_world
    from acnn_mpi.relax import shards
    from acnn_mpi.relax.runner import relax_structures
    from acnn_mpi.relax.service import serve

    comm = get_world()
    config = campaign_config(args)
    config.model.compile = args.compile
    for rank in range(comm.size):  # one build at a time (the root's fills the cache for the others)
        if rank == comm.rank:
            mode = configure_kernels(args.compile)  # process-wide: the campaign and the standalone side
        comm.barrier()
    if comm.is_root:
        print(f"model.compile: {mode} (asked: {args.compile})")
    torch.manual_seed(0)
    model = Repulsive(ACNN(ACNNHyperparameters(elements=list(config.elements))))
    root = Path(comm.bcast(tempfile.mkdtemp(prefix="bench_csp_") if comm.is_root else None))
    paths = CampaignPaths(root)
    chunks = plan_chunks(search_cells(compositions_from_config(config)), 1, args.structures,
                         config.relax.chunk_size, config.seed)
    dtype = torch.float64 if config.model.dtype == "float64" else torch.float32
    warm = generate_chunk(config, chunks[0])[0][:2]  # first calls (allocator, kernels): untimed on every rank
    relax_structures(warm, model, config.pressure, config.relax, min_distances=config.min_distance_table(),
                     dtype=dtype, max_steps=3)
    service = make_service(config, paths, 1, comm.rank, model=model)
    make, generation_cpu = service.make, [0.0]

    def timed_make(task):  # the rank's main thread generates while its batch steps in the other
        cpu = time.thread_time()
        out = make(task)
        generation_cpu[0] += time.thread_time() - cpu
        return out

    service.make = timed_make
    comm.barrier()
    wall = time.perf_counter()
    summaries = serve(comm, [CSPTask(chunk=c) for c in chunks] if comm.is_root else None, service)
    wall = time.perf_counter() - wall
    generation_cpu = comm.gather(generation_cpu[0])
    # the standalone engine on the same structures, split over the same ranks (one process each)
    structures = [a for c in chunks for a in generate_chunk(config, c)[0]]
    mine = structures[comm.rank::comm.size]
    comm.barrier()
    cpu, alone_wall = time.process_time(), time.perf_counter()
    alone = relax_structures(mine, model, config.pressure, config.relax,
                             min_distances=config.min_distance_table(), dtype=dtype)
    alone_cpu, alone_wall = time.process_time() - cpu, time.perf_counter() - alone_wall
    alone = comm.gather([(r.structure_id, r.status, r.steps, r.enthalpy_per_atom) for r in alone])
    alone_cpu = comm.gather(alone_cpu)
    if not comm.is_root:
        return 0
    alone = [r for part in alone for r in part]
    report(comm, structures, shards.read_results(paths.relax_dir(1)), summaries, wall, sum(generation_cpu),
           alone, sum(alone_cpu), alone_wall)
    return 0


def shares(statuses: dict, n: int) -> str:
    return ", ".join(f"{k} {100 * v / n:.0f} %" for k, v in sorted(statuses.items()))


def report(comm, structures, done, summaries, wall, generation_cpu, alone, alone_cpu, alone_wall) -> None:
    """Print the table (root only)."""
    from acnn_mpi.relax.service import total_statuses

    campaign_cpu = sum(s.cpu_s for s in summaries)
    n, n_alone = len(done), len(alone)
    steps, steps_alone = int(done.steps.sum()), sum(r[2] for r in alone)
    h_alone = {r[0]: r[3] for r in alone}
    same = sum(abs(h_alone[int(i)] - h) < 1e-3 for i, h in zip(done.structure_id, done.enthalpy_per_atom))
    rate, rate_alone = n / (campaign_cpu / 3600), n_alone / (alone_cpu / 3600)
    rate_relax = n / ((campaign_cpu - generation_cpu) / 3600)
    atoms = [len(a) for a in structures]
    print(f"machine: {machine_line()}; {comm.size} ranks, 1 torch thread each")
    print(f"{n} structures of {min(atoms)}-{max(atoms)} atoms (mean {np.mean(atoms):.0f}; Mg-Ca-H plan, 300 GPa), "
          f"paper-size ACNN with random weights + repulsion")
    print("| path | structures | statuses | steps/structure | CPU s | CPU ms per structure-step | "
          "structures per core-hour |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| campaign CSP stage ({comm.size} ranks, wall {wall:.0f} s; structures per rank "
          f"{[s.structures for s in summaries]}) | {n} | "
          f"{shares(dict(total_statuses(summaries)), n)} | {steps / n:.1f} | {campaign_cpu:.1f} | "
          f"{1e3 * campaign_cpu / steps:.2f} | {rate:,.0f} |")
    print(f"| standalone relax_structures ({comm.size} processes, wall {alone_wall:.0f} s) | {n_alone} | "
          f"{shares(dict(Counter(r[1] for r in alone)), n_alone)} | {steps_alone / n_alone:.1f} | {alone_cpu:.1f} | "
          f"{1e3 * alone_cpu / steps_alone:.2f} | {rate_alone:,.0f} |")
    print(f"campaign / standalone = {100 * rate / rate_alone:.0f} % per structure, "
          f"{100 * (alone_cpu / steps_alone) / (campaign_cpu / steps):.0f} % per structure-step; "
          f"generating the structures on the ranks {generation_cpu:.1f} CPU s = {100 * generation_cpu / campaign_cpu:.1f} "
          f"% of the campaign's CPU (without it {100 * rate_relax / rate_alone:.0f} %); same enthalpy (1 meV/atom) for "
          f"{same}/{n}; vs the paper's 474 per core-hour: {rate / 474:.1f}×")


if __name__ == "__main__":
    sys.exit(main())
