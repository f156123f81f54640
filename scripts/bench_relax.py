"""Benchmark: batched relaxation (acnn_mpi.relax) against ASE's BFGS + FrechetCellFilter.

Part 1 (same structures, same model): random periodic structures relaxed at a pressure
  (a) one at a time with ASE's BFGS on FrechetCellFilter, through an ASE calculator of the model;
  (b) with ``relax_structures`` (batched BFGS, continuous batching, Verlet lists).
  Reported: fraction reaching the same minimum (enthalpy within 1 meV/atom), steps per structure,
  CPU seconds, structures per core-hour and the ratio.
Part 2 (throughput only): Mg-Ca-H-like random cells at 300 GPa with the paper's ACNN
  hyperparameters (random weights plus a short-range repulsion so relaxations stay physical).

One torch thread; time is the process CPU time (core-seconds), so other load on the machine
affects the figures less than wall time would.

    python scripts/bench_relax.py                       # both parts, default sizes
    python scripts/bench_relax.py --n 64 --model lj     # part 1 only, LJ
    python scripts/bench_relax.py --part 2 --n 32
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from ase import Atoms  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

from acnn_mpi.model.forces import evaluate  # noqa: E402
from acnn_mpi.model.lennard_jones import LennardJones  # noqa: E402
from acnn_mpi.neighbors import Edges  # noqa: E402
from acnn_mpi.relax.runner import relax_structures  # noqa: E402
from acnn_mpi.state import Batch  # noqa: E402
from acnn_mpi.units import gpa_to_ev_per_a3  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} logical cores; Python {platform.python_version()}; "
            f"torch {torch.__version__}; 1 torch thread")


class TorchModelCalculator(Calculator):
    """Minimal ASE calculator around an atomic-energy model (one structure per call)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.dtype = next((t.dtype for t in list(model.parameters()) + list(model.buffers())
                           if t.is_floating_point()), torch.float64)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        batch = Batch.from_atoms([self.atoms], dtype=self.dtype)
        out = evaluate(self.model, batch)
        stress = out.stress[0].double().numpy()
        energy = float(out.energy[0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out.forces.double().numpy(),
                        "stress": stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]}


def ase_relax(structures, model, pressure_gpa, fmax, max_steps):
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    calc = TorchModelCalculator(model)
    out = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        filtered = FrechetCellFilter(atoms, scalar_pressure=gpa_to_ev_per_a3(pressure_gpa))
        optimizer = BFGS(filtered, logfile=None)
        converged = optimizer.run(fmax=fmax, steps=max_steps)
        enthalpy = atoms.get_potential_energy() + gpa_to_ev_per_a3(pressure_gpa) * atoms.get_volume()
        out.append({"enthalpy_per_atom": enthalpy / len(atoms), "steps": optimizer.nsteps,
                    "converged": bool(converged)})
    return out


def random_structures(n, species, counts_range, volume_per_atom, min_distance, seed=0):
    """Random triclinic cells with random positions at least ``min_distance(a, b)`` apart."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        k = int(rng.integers(counts_range[0], counts_range[1] + 1))
        symbols = list(rng.choice(species, k))
        volume = sum(volume_per_atom[s] for s in symbols) * rng.uniform(0.9, 1.1)
        cell = np.diag(rng.uniform(0.8, 1.2, 3))
        cell[1, 0], cell[2, 0], cell[2, 1] = rng.uniform(-0.3, 0.3, 3)
        cell *= (volume / abs(np.linalg.det(cell))) ** (1 / 3)
        positions = []
        for _ in range(200 * k):
            trial = rng.random(3) @ cell
            if positions:
                probe = Atoms(symbols[: len(positions) + 1], positions=positions + [trial], cell=cell, pbc=True)
                d = probe.get_distances(len(positions), list(range(len(positions))), mic=True)
                limits = [min_distance(symbols[len(positions)], symbols[j]) for j in range(len(positions))]
                if np.any(d < limits):
                    continue
            positions.append(trial)
            if len(positions) == k:
                break
        if len(positions) == k:
            out.append(Atoms(symbols, positions=positions, cell=cell, pbc=True))
    return out


MGCAH_VOLUMES = {"Mg": 7.1, "Ca": 8.8, "H": 1.4}
MGCAH_DMIN = {("Mg", "Mg"): 1.9, ("Mg", "Ca"): 1.9, ("Mg", "H"): 1.4, ("Ca", "Ca"): 1.9,
              ("Ca", "H"): 1.6, ("H", "H"): 0.8}



class Repulsive(torch.nn.Module):
    """ACNN plus a short-range pair repulsion ε[(r₀/r)¹² shifted to vanish smoothly at 1.5 r₀] with
    r₀ the paper's Mg-Ca-H minimum distances (Eq. 17; 0.8 × covalent sum for other pairs): keeps a
    random-weight ACNN from collapsing cells at high pressure."""

    def __init__(self, acnn, strength=1.0):
        super().__init__()
        from ase.data import atomic_numbers, covalent_radii

        self.acnn = acnn
        self.cutoff = acnn.cutoff
        self.strength = strength
        radii = torch.tensor(np.asarray(covalent_radii[:119]), dtype=torch.float64)
        r0 = 0.8 * (radii[:, None] + radii[None, :])
        for (a, b), d in MGCAH_DMIN.items():
            r0[atomic_numbers[a], atomic_numbers[b]] = r0[atomic_numbers[b], atomic_numbers[a]] = d
        self.register_buffer("r0", r0, persistent=False)

    def atomic_energies(self, batch, edges: Edges):
        energies = self.acnn.atomic_energies(batch, edges)
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        i, j = edges.index
        with torch.no_grad():  # the few pairs inside 1.5 r₀ (the same energy: zero beyond)
            pair_code = batch.numbers.index_select(0, i) * self.r0.shape[0] + batch.numbers.index_select(0, j)
            r0 = self.r0.to(vectors.dtype).view(-1).index_select(0, pair_code)
            near = torch.nonzero((vectors * vectors).sum(1) < (1.5 * r0) ** 2).flatten()
        i, r0 = i.index_select(0, near), r0.index_select(0, near)
        r = torch.linalg.norm(vectors.index_select(0, near), dim=1)
        rc = 1.5 * r0
        x, xc = r0 / r, r0 / rc
        pair = self.strength * (x ** 12 - xc ** 12 + 12 * xc ** 12 * (r - rc) / rc)
        extra = torch.zeros_like(energies).index_add(0, i, 0.5 * pair.to(energies.dtype))
        return energies + extra


def part1(args):
    print(f"## Part 1: same structures, same model ({args.model}"
          f"{', ' + args.dtype if args.model == 'acnn' else ''}), {args.n} structures, "
          f"P = {args.pressure} GPa, fmax {args.fmax} eV/Å")
    if args.model == "lj":
        model = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.5)
        structures = random_structures(args.n, ["Ar"], (4, 16), {"Ar": 40.0}, lambda a, b: 2.8, seed=args.seed)
    else:
        from acnn_mpi.model.potential import ACNN, ACNNHyperparameters

        torch.manual_seed(args.seed)
        acnn = ACNN(ACNNHyperparameters(elements=["Mg", "Ca", "H"], dtype=args.dtype, fitting=[64, 64],
                                        embedding=[32, 32]))
        model = Repulsive(acnn)
        structures = mgcah_structures(args.n, args.seed, (4, 12))
    print(f"structures: {len(structures)}, atoms {min(map(len, structures))}-{max(map(len, structures))}")

    t0 = time.process_time()
    ours = relax_structures(structures, model, args.pressure, batch_size=args.batch_size, fmax=args.fmax,
                            max_steps=args.max_steps, stress_tol=args.stress_tol, dh_tol=args.dh_tol,
                            volume_window=None, min_distance_fraction=0.3, ase_compatible=not args.inverse,
                            uphill_tolerance=args.uphill)
    t_ours = time.process_time() - t0
    n_ase = min(args.n, args.ase_n or args.n)
    t0 = time.process_time()
    ase = ase_relax(structures[:n_ase], model, args.pressure, args.fmax, args.max_steps)
    t_ase = time.process_time() - t0

    same = [abs(o.enthalpy_per_atom - a["enthalpy_per_atom"]) <= 1e-3 for o, a in zip(ours, ase)]
    lower = [o.enthalpy_per_atom < a["enthalpy_per_atom"] - 1e-3 for o, a in zip(ours, ase)]
    rate_ours = len(ours) / (t_ours / 3600)
    rate_ase = n_ase / (t_ase / 3600)
    from collections import Counter

    print(f"statuses (batched): {dict(Counter(r.status for r in ours))}; "
          f"ASE converged: {sum(a['converged'] for a in ase)}/{n_ase}")
    print("| method | structures | steps/structure (mean, median) | CPU s | structures/core-hour |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| ASE BFGS + FrechetCellFilter, one at a time | {n_ase} | "
          f"{np.mean([a['steps'] for a in ase]):.1f}, {np.median([a['steps'] for a in ase]):.0f} | "
          f"{t_ase:.1f} | {rate_ase:,.0f} |")
    print(f"| relax_structures, batch {args.batch_size} | {len(ours)} | "
          f"{np.mean([r.steps for r in ours]):.1f}, {np.median([r.steps for r in ours]):.0f} | "
          f"{t_ours:.1f} | {rate_ours:,.0f} |")
    for k, (o, a) in enumerate(zip(ours, ase)):
        if not same[k]:
            print(f"  differs: #{k} {len(o.atoms)} atoms: batched {o.status} {o.enthalpy_per_atom:.5f} eV/atom "
                  f"({o.steps} steps{'; ' + o.reason if o.reason else ''}), ASE {a['enthalpy_per_atom']:.5f} "
                  f"({a['steps']} steps, converged {a['converged']})")
    print(f"same minimum (|ΔH| ≤ 1 meV/atom): {sum(same)}/{n_ase} = {100 * np.mean(same):.1f}%; "
          f"batched lower by > 1 meV/atom: {sum(lower)}; throughput ratio {rate_ours / rate_ase:.1f}×")
    return rate_ours / rate_ase


def _dmin(a, b):
    return MGCAH_DMIN.get((a, b), MGCAH_DMIN.get((b, a)))


def mgcah_structures(n, seed, counts_range, volume_scale=1.0):
    volumes = {k: v * volume_scale for k, v in MGCAH_VOLUMES.items()}
    return random_structures(n, ["Mg", "Ca", "H", "H", "H", "H"], counts_range, volumes, _dmin, seed=seed)


def part2(args):
    from acnn_mpi.model.potential import ACNN, ACNNHyperparameters

    torch.manual_seed(args.seed)
    acnn = ACNN(ACNNHyperparameters(elements=["Mg", "Ca", "H"]))  # paper hyperparameters, float32
    model = Repulsive(acnn)
    structures = mgcah_structures(args.n2, args.seed + 1, (8, 24), volume_scale=2.0)  # room to place atoms
    print(f"\n## Part 2: Mg-Ca-H-like cells at 300 GPa, ACNN with the paper's hyperparameters "
          f"(RANDOM weights + r⁻¹² repulsion; throughput only), {len(structures)} structures of "
          f"{min(map(len, structures))}-{max(map(len, structures))} atoms")
    t0 = time.process_time()
    results = relax_structures(structures, model, 300.0, batch_size=args.batch_size, fmax=args.fmax,
                               max_steps=args.max_steps, stress_tol=args.stress_tol,
                               min_distances={k: v for k, v in MGCAH_DMIN.items()}, volume_window=None)
    elapsed = time.process_time() - t0
    from collections import Counter

    steps = [r.steps for r in results]
    print(f"statuses: {dict(Counter(r.status for r in results))}; steps mean {np.mean(steps):.1f}, "
          f"median {np.median(steps):.0f}; CPU {elapsed:.1f} s; "
          f"{len(results) / (elapsed / 3600):,.0f} structures per core-hour "
          f"({elapsed / sum(steps) * 1e3:.2f} ms per structure-step)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["1", "2", "both"], default="both")
    parser.add_argument("--model", choices=["lj", "acnn"], default="lj", help="part 1 model")
    parser.add_argument("--n", type=int, default=64, help="part 1 structures")
    parser.add_argument("--ase-n", type=int, default=None, help="run ASE on the first N only")
    parser.add_argument("--n2", type=int, default=32, help="part 2 structures")
    parser.add_argument("--pressure", type=float, default=0.0, help="part 1 pressure, GPa")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fmax", type=float, default=1e-3)
    parser.add_argument("--dh-tol", type=float, default=1e-6)
    parser.add_argument("--stress-tol", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="part 1 ACNN dtype (float32: the CSP default)")
    parser.add_argument("--inverse", action="store_true", help="batched: inverse-Hessian steps only")
    parser.add_argument("--uphill", type=float, default=0.0, help="batched: uphill tolerance, eV/atom")
    parser.add_argument("--compile", default="off", choices=["off", "cpp", "inductor"],
                        help="model.compile of the ACNN for every method (the same model everywhere)")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    from acnn_mpi.model.descriptor import configure_kernels

    print(f"ACNN kernels (model.compile): {configure_kernels(args.compile)}; load average {os.getloadavg()[0]:.1f}")
    if args.part in ("1", "both"):
        part1(args)
    if args.part in ("2", "both"):
        part2(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
