"""Benchmark: ACNN energy + forces + stress per core (``acnn_mpi.model.forces.evaluate``).

With the paper's hyperparameters (n_r 16, n_a 14, l_max 4, embedding [64, 64], fitting [256, 256],
float32) on random cells of the two paper systems:
  (a) Mg-Ca-H at ~300 GPa: 40-80 atoms, ~4.5 Å³/atom, r_c 5.0 / 4.0 Å;
  (b) Be-P-N-O at ambient pressure: 30-60 atoms, ~12 Å³/atom, r_c 6.5 / 6.0 Å;
batch sizes 1, 16 and 64, with 0 and 1 attention modules. Reported per configuration:
atom-steps per second (one step = neighbour list + energy + forces + stress), the neighbour-list
share of the time, neighbours per atom, matmul FLOPs per atom-step (torch's FlopCounterMode,
forward and backward) and the FLOP rate that makes, against a plain float32 matmul on one core
measured in the same run.

One torch thread ("per core"). Times are medians of repeated calls. Rates are given per CPU
second of the process (the per-core figure; robust to other jobs on a shared machine) and per wall
second (equal on an idle machine).

    python scripts/bench_model.py                  # everything (< 2 minutes)
    python scripts/bench_model.py --batch-sizes 64 --cases a
    python scripts/bench_model.py --levers --batch-sizes 16,64   # each speed lever, one process
    python scripts/bench_model.py --compile off,cpp,inductor      # model.compile modes side by side
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from ase import Atoms  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from acnn_mpi.model.forces import evaluate  # noqa: E402
from acnn_mpi.model.potential import ACNN, ACNNHyperparameters  # noqa: E402
from acnn_mpi.neighbors import neighbor_list  # noqa: E402
from acnn_mpi.state import Batch  # noqa: E402
from benchlib import machine_line  # noqa: E402  (scripts/ is on sys.path)

# (elements, stoichiometry weights, Å³/atom, atoms per cell, r_c radial, r_c angular, min distances Å)
CASES = {
    "a": dict(name="Mg-Ca-H, 300 GPa", elements=["Mg", "Ca", "H"], weights=[1, 1, 10],
              volume=4.5, atoms=(40, 80), r_cut=(5.0, 4.0),
              radius={"Mg": 0.95, "Ca": 1.1, "H": 0.45}),
    "b": dict(name="Be-P-N-O, 0 GPa", elements=["Be", "P", "N", "O"], weights=[2, 1, 3, 1],
              volume=12.0, atoms=(30, 60), r_cut=(6.5, 6.0),
              radius={"Be": 0.75, "P": 0.85, "N": 0.65, "O": 0.65}),
}


def machine() -> str:
    return machine_line(f"torch {torch.__version__}", f"{torch.get_num_threads()} torch thread(s)")


def random_cell(rng, case) -> Atoms:
    """A random triclinic cell with per-pair minimum distances (sum of the radii)."""
    n = int(rng.integers(case["atoms"][0], case["atoms"][1] + 1))
    weights = np.array(case["weights"], dtype=float)
    symbols = list(rng.choice(case["elements"], size=n, p=weights / weights.sum()))
    symbols.sort(key=lambda s: -case["radius"][s])  # big atoms first
    cell = np.eye(3) + rng.uniform(-0.15, 0.15, size=(3, 3))
    cell *= (n * case["volume"] / abs(np.linalg.det(cell))) ** (1 / 3)
    radius = np.array([case["radius"][s] for s in symbols])
    frac = np.zeros((0, 3))
    placed = []
    for k, symbol in enumerate(symbols):
        for _ in range(2000):
            f = rng.random(3)
            d = frac - f
            d -= np.round(d)
            if not len(d) or np.all(np.linalg.norm(d @ cell, axis=1) > radius[k] + radius[placed]):
                break
        frac = np.vstack([frac, f])
        placed.append(k)
    return Atoms(symbols=symbols, scaled_positions=frac, cell=cell, pbc=True)


def timed(function, repeats):
    """Median wall and CPU seconds of ``function()`` over ``repeats`` calls (after one warm-up)."""
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def matmul_rate() -> float:
    """FLOP/s (per CPU second) of a plain float32 (1024 x 1024) @ (1024 x 1024) product, one thread."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    _, cpu = timed(lambda: a @ b, 10)
    return 2 * 1024 ** 3 / cpu


def run_case(key, batch_sizes, attention, repeats, rng, peak, dtype, modes):
    from acnn_mpi.model.descriptor import configure_kernels

    case = CASES[key]
    structures = [random_cell(rng, case) for _ in range(max(batch_sizes))]
    for layers, mode in [(a, m) for a in attention for m in modes]:
        if layers and mode == "cpp":
            continue  # the C++ kernels serve the model without attention only
        if configure_kernels(mode) != mode:
            continue
        torch.manual_seed(0)
        model = ACNN(ACNNHyperparameters(elements=case["elements"], r_cut_radial=case["r_cut"][0],
                                         r_cut_angular=case["r_cut"][1], attention_layers=layers,
                                         dtype=dtype))
        model.fit_descriptor_statistics(Batch.from_atoms(structures[:8], dtype=model.dtype))
        for size in batch_sizes:
            batch = Batch.from_atoms(structures[:size], dtype=model.dtype)
            n_atoms = batch.positions.shape[0]
            edges = neighbor_list(batch, model.cutoff)
            reps = max(2, repeats * 16 // max(size, 16)) if size > 1 else repeats * 4
            t_nl, c_nl = timed(lambda: neighbor_list(batch, model.cutoff), reps)
            t_ev, c_ev = timed(lambda: evaluate(model, batch, edges=edges), reps)
            with FlopCounterMode(display=False) as counter:
                evaluate(model, batch, edges=edges)
            flops = counter.get_total_flops() / n_atoms
            rate = flops * n_atoms / c_ev
            print(f"{case['name']:17s} {mode:>8s} {layers:4d} {size:5d} {n_atoms:6d} {edges.n_edges / n_atoms:6.0f} "
                  f"{n_atoms / (c_nl + c_ev):9.0f} {n_atoms / (t_nl + t_ev):9.0f} {n_atoms / c_ev:9.0f} "
                  f"{100 * c_nl / (c_nl + c_ev):6.1f}% {flops / 1e6:7.2f} {rate / 1e9:7.2f} "
                  f"{100 * rate / peak:6.1f}%", flush=True)


def levers(repeats, rng, batch_sizes):
    """Each speed lever's effect, in one process (case (a), no attention), in the order they were
    added: autograd reference → fused backward → allocator tuning → bucketed tables →
    torch.compile of the kernels; then the C++ per-edge kernels in place of torch.compile."""
    from acnn_mpi.model import descriptor, forces

    case = CASES["a"]
    structures = [random_cell(rng, case) for _ in range(max(batch_sizes))]
    torch.manual_seed(0)
    model = ACNN(ACNNHyperparameters(elements=case["elements"], r_cut_radial=case["r_cut"][0],
                                     r_cut_angular=case["r_cut"][1]))
    model.fit_descriptor_statistics(Batch.from_atoms(structures[:8], dtype=model.dtype))
    forces.TUNE_ALLOCATOR = False  # measured as its own lever below
    default_bucket_cost = model.descriptor.BUCKET_COST_ENTRIES
    model.descriptor.BUCKET_COST_ENTRIES = 10 ** 15  # one table, as before

    def setup(name):
        if name == "autograd (reference)":
            descriptor.use_fused_path(False)
        elif name == "+ fused first-derivative backward":
            descriptor.use_fused_path(True)
        elif name == "+ malloc keeps freed memory":
            forces.keep_freed_memory(True)
        elif name == "+ bucketed neighbour tables":
            model.descriptor.BUCKET_COST_ENTRIES = default_bucket_cost
        elif name == "+ torch.compile of the fused kernels":
            start = time.process_time()
            descriptor.compile_fused_kernels(True)
            batch = Batch.from_atoms(structures[:2], dtype=model.dtype)
            evaluate(model, batch)
            print(f"   (torch.compile: {time.process_time() - start:.0f} CPU s in this process, "
                  "plus the compile workers)")
        else:
            descriptor.compile_fused_kernels(False)
            start = time.process_time()
            if descriptor.configure_kernels("cpp") != "cpp":
                return False
            print(f"   (C++ kernels: {time.process_time() - start:.0f} CPU s in this process to build or load)")
        return True

    print(f"\n{'lever (cumulative), Mg-Ca-H, no attention':48s} {'batch':>5s} {'atoms':>6s} {'model/s':>9s} "
          f"{'vs ref':>7s}")
    reference = {}
    for name in ("autograd (reference)", "+ fused first-derivative backward", "+ malloc keeps freed memory",
                 "+ bucketed neighbour tables", "+ torch.compile of the fused kernels",
                 "C++ per-edge kernels (instead of torch.compile)"):
        if setup(name) is False:
            continue
        for size in batch_sizes:
            batch = Batch.from_atoms(structures[:size], dtype=model.dtype)
            edges = neighbor_list(batch, model.cutoff)
            n_atoms = batch.positions.shape[0]
            _, cpu = timed(lambda: evaluate(model, batch, edges=edges), max(3, repeats * 16 // size))
            rate = n_atoms / cpu
            reference.setdefault(size, rate)
            print(f"{name:48s} {size:5d} {n_atoms:6d} {rate:9.0f} {rate / reference[size]:6.2f}x", flush=True)
    for mode in ("off", "cpp"):
        if descriptor.configure_kernels(mode) == mode:
            bound(model, Batch.from_atoms(structures[:16], dtype=model.dtype), repeats, mode)
    descriptor.configure_kernels("off")


def bound(model, batch, repeats, mode):
    """What the time is made of (allocator tuned; ``mode``: the model.compile mode in effect): one
    evaluate against its parts and against one elementwise pass over the padded radial table
    (N·M, n_r)."""
    from acnn_mpi.model import descriptor

    edges = neighbor_list(batch, model.cutoff)
    species = model.species_index(batch.numbers)
    n_atoms = batch.positions.shape[0]
    vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
    with torch.no_grad():
        features = model.descriptor(vectors, edges.index, species)
    radial = features.radial.clone().requires_grad_(True)
    angular = features.angular.clone().requires_grad_(True)

    def mlps():
        energy = model.fitting(model.embedding(radial, angular, species)).sum()
        torch.autograd.grad(energy, (radial, angular))

    def descriptor_only():
        v = vectors.detach().requires_grad_(True)
        with descriptor.first_derivatives_only(True, parameter_gradients=False):
            out = model.descriptor(v, edges.index, species, neighbour_table=False)
        torch.autograd.grad(out.radial.sum() + out.angular.sum(), v)

    width = features.neighbour.shape[1]
    a = torch.rand(n_atoms * width, model.descriptor.n_radial)
    b, out = torch.rand_like(a), torch.empty_like(a)
    reps = max(3, repeats * 2)
    t_all = timed(lambda: evaluate(model, batch, edges=edges), reps)[1]
    t_desc = timed(descriptor_only, reps)[1]
    t_mlp = timed(mlps, reps)[1]
    t_pass = timed(lambda: torch.mul(a, b, out=out), 20)[1]
    gbs = 3 * a.numel() * 4 / t_pass / 1e9
    print(f"\nwhere the time goes (kernels: {mode}; batch {batch.n_systems}, {n_atoms} atoms, radial table {n_atoms} x {width} "
          f"x {model.descriptor.n_radial}):\n"
          f"  evaluate {1e3 * t_all:.1f} ms = descriptor forward+backward {1e3 * t_desc:.1f} ms "
          f"({100 * t_desc / t_all:.0f} %) + MLPs forward+backward {1e3 * t_mlp:.1f} ms "
          f"({100 * t_mlp / t_all:.0f} %) + the rest\n"
          f"  one elementwise pass over the radial table (a*b, float32): {1e3 * t_pass:.2f} ms "
          f"({gbs:.1f} GB/s); evaluate = {t_all / t_pass:.0f} such passes, descriptor = {t_desc / t_pass:.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="ab", help="which systems: a (Mg-Ca-H), b (Be-P-N-O)")
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--attention", default="0,1", help="attention modules to compare")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--compile", default="off,cpp",
                        help="model.compile modes to compare (off, cpp, inductor), comma-separated")
    parser.add_argument("--levers", action="store_true",
                        help="only the effect of each speed lever (case a, no attention)")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    attention = [int(a) for a in args.attention.split(",")]
    start = time.perf_counter()
    print(f"machine: {machine()}")
    peak = matmul_rate()
    print(f"plain float32 matmul (1024^3) on one thread: {peak / 1e9:.1f} GFLOP/s")
    print("model: paper hyperparameters (n_r 16, n_a 14, l_max 4, embedding [64, 64], fitting [256, 256]), "
          f"{args.dtype}")
    print("one step = neighbour list + evaluate (energy, forces, stress). Rates per CPU second of this\n"
          "process ('cpu', = per core) and per wall second ('wall', lower when the machine is shared);\n"
          "'model': without the neighbour list; 'nl': neighbour-list share of the CPU time; MFLOP: matmul\n"
          "FLOPs per atom-step (FlopCounterMode, forward + backward); GFLOP/s and 'of mm': the model's\n"
          "matmul FLOP rate per CPU second, and as a fraction of the plain matmul rate above\n")
    rng = np.random.default_rng(args.seed)
    if args.levers:
        levers(args.repeats, rng, batch_sizes)
        print(f"\ntotal benchmark time {time.perf_counter() - start:.0f} s; load average now "
              f"{os.getloadavg()[0]:.1f}")
        return 0
    print(f"{'system':17s} {'kernels':>8s} {'attn':>4s} {'batch':>5s} {'atoms':>6s} {'nbrs':>6s} {'cpu/s':>9s} "
          f"{'wall/s':>9s} {'model':>9s} {'nl':>7s} {'MFLOP':>7s} {'GFLOP/s':>7s} {'of mm':>7s}")
    for key in args.cases:
        run_case(key, batch_sizes, attention, args.repeats, rng, peak, args.dtype, args.compile.split(","))
    print(f"\ntotal benchmark time {time.perf_counter() - start:.0f} s; load average now "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
