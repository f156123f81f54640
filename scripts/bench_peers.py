"""Benchmark: our batched BFGS against TorchSim's batched optimizers, same model, dtype, tolerances.

Structures: random Mg-Ca-H-like cells (as ``bench_relax.py`` part 2), relaxed at 300 GPa with the
ACNN of the paper's hyperparameters (float32, RANDOM weights plus the r⁻¹² repulsion of
bench_relax.py, so this measures optimizers and cost, not a trained landscape). Methods:

* ours: ``relax_structures`` (batched BFGS, Fréchet cell filter, continuous batching, Verlet lists),
  converged at max |F| ≤ fmax, max |σ + P| ≤ stress-tol and |ΔH| ≤ dh-tol;
* TorchSim ``frechet_cell_fire`` (batched FIRE, ASE and velocity-Verlet flavours) through
  ``acnn_mpi.model.torchsim.TorchSimModel``, converged when atom and cell forces are ≤ fmax
  (TorchSim's force criterion with cell forces), with its in-flight batcher (converged structures
  leave every 5 steps);
* TorchSim (L-)BFGS, when the installed torch-sim has one (0.3.0 has none);
* ASE ``LBFGS`` and ``FIRE`` on ``FrechetCellFilter``, one structure at a time (fmax on the filter
  forces): steps of the FIRE / L-BFGS alternatives against our BFGS.

Reported per method: fraction of structures reaching the lowest minimum found by any method
(enthalpy within 1 meV/atom), model evaluations per structure, CPU seconds (process time, one
torch thread), the ratio to ours.

    python scripts/bench_peers.py                 # 16 structures (~10 min on one loaded core)
    python scripts/bench_peers.py --n 8 --atoms 8,16 --ase LBFGS --fire ase_fire,vv_fire
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from bench_relax import MGCAH_DMIN, Repulsive, TorchModelCalculator, mgcah_structures  # noqa: E402
from benchlib import machine_line  # noqa: E402

from acnn_mpi.model.potential import ACNN, ACNNHyperparameters  # noqa: E402
from acnn_mpi.relax.runner import relax_structures  # noqa: E402
from acnn_mpi.units import gpa_to_ev_per_a3  # noqa: E402


def ours(structures, model, args):
    t0 = time.process_time()
    results = relax_structures(structures, model, args.pressure, batch_size=args.batch_size, fmax=args.fmax,
                               max_steps=args.max_steps, stress_tol=args.stress_tol, dh_tol=args.dh_tol,
                               min_distances=dict(MGCAH_DMIN), volume_window=None)
    cpu = time.process_time() - t0
    return {"enthalpy": [r.enthalpy_per_atom for r in results], "evaluations": [r.steps + 1 for r in results],
            "converged": [r.status == "converged" for r in results], "cpu": cpu}


def torchsim(structures, model, args, flavor):
    import torch_sim as ts

    from acnn_mpi.model.torchsim import TorchSimModel

    wrapped = TorchSimModel(model)
    pressure = gpa_to_ev_per_a3(args.pressure)
    batcher = ts.autobatching.InFlightAutoBatcher(wrapped, memory_scales_with="n_atoms",
                                                  max_memory_scaler=float(sum(map(len, structures))) + 1)
    convergence = ts.runners.generate_force_convergence_fn(force_tol=args.fmax, include_cell_forces=True)
    t0 = time.process_time()
    final = ts.optimize(structures, wrapped, optimizer=ts.optimizers.frechet_cell_fire,
                        convergence_fn=convergence, autobatcher=batcher, max_steps=args.max_steps,
                        scalar_pressure=pressure, md_flavor=flavor)
    cpu = time.process_time() - t0
    cell = final.row_vector_cell.double()
    volume = torch.linalg.det(cell).abs()
    counts = torch.bincount(final.system_idx, minlength=final.n_systems).double()
    # TorchSim keeps the energy of the last evaluation in the state
    enthalpy = ((final.energy.double() + pressure * volume) / counts).tolist()
    forces_ok = convergence(final, None).tolist()
    n = len(structures)
    return {"enthalpy": enthalpy, "evaluations": [wrapped.n_structure_evaluations / n] * n,
            "converged": forces_ok, "cpu": cpu}


def ase_relax(structures, model, args, name):
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE, LBFGS

    optimizer_class = {"LBFGS": LBFGS, "FIRE": FIRE}[name]
    calc = TorchModelCalculator(model)
    pressure = gpa_to_ev_per_a3(args.pressure)
    out = {"enthalpy": [], "evaluations": [], "converged": []}
    t0 = time.process_time()
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        optimizer = optimizer_class(FrechetCellFilter(atoms, scalar_pressure=pressure), logfile=None)
        converged = optimizer.run(fmax=args.fmax, steps=args.max_steps)
        out["enthalpy"].append((atoms.get_potential_energy() + pressure * atoms.get_volume()) / len(atoms))
        out["evaluations"].append(optimizer.nsteps + 1)
        out["converged"].append(bool(converged))
    out["cpu"] = time.process_time() - t0
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="structures")
    parser.add_argument("--atoms", default="8,24", help="atoms per cell, min,max")
    parser.add_argument("--pressure", type=float, default=300.0, help="GPa")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--fmax", type=float, default=1e-3)
    parser.add_argument("--stress-tol", type=float, default=0.05)
    parser.add_argument("--dh-tol", type=float, default=1e-6)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fire", default="ase_fire", help="TorchSim FIRE flavours, comma-separated "
                        "(ase_fire, vv_fire)")
    parser.add_argument("--ase", default="LBFGS,FIRE", help="ASE optimizers to run one at a time "
                        "(LBFGS, FIRE; empty: none)")
    parser.add_argument("--compile", default="off", choices=["off", "cpp", "inductor"],
                        help="model.compile of the ACNN for every method (the same model everywhere)")
    args = parser.parse_args(argv)
    print(f"machine: {machine_line(f'torch {torch.__version__}', '1 torch thread')}")
    from acnn_mpi.model.descriptor import configure_kernels

    print(f"ACNN kernels (model.compile): {configure_kernels(args.compile)}; load average {os.getloadavg()[0]:.1f}")
    torch.manual_seed(args.seed)
    model = Repulsive(ACNN(ACNNHyperparameters(elements=["Mg", "Ca", "H"], dtype=args.dtype)))
    low, high = (int(a) for a in args.atoms.split(","))
    structures = mgcah_structures(args.n, args.seed + 1, (low, high), volume_scale=2.0)
    print(f"{len(structures)} Mg-Ca-H cells, {low}-{high} atoms, {args.pressure} GPa, paper-size ACNN "
          f"({args.dtype}, random weights + repulsion); fmax {args.fmax} eV/Å, stress {args.stress_tol} GPa, "
          f"ΔH {args.dh_tol} eV/atom (ours)")
    runs = {"ours: batched BFGS (relax_structures)": ours(structures, model, args)}
    for flavor in [f for f in args.fire.split(",") if f]:
        runs[f"TorchSim frechet_cell_fire ({flavor}), batched"] = torchsim(structures, model, args, flavor)
    import torch_sim as ts

    if not any("bfgs" in name.lower() for name in dir(ts.optimizers)):
        print("TorchSim (L-)BFGS: not in the installed torch-sim (version "
              f"{_version('torch-sim-atomistic')}); not measured")
    for name in [a for a in args.ase.split(",") if a]:
        runs[f"ASE {name} + FrechetCellFilter, one at a time"] = ase_relax(structures, model, args, name)
    enthalpies = np.array([run["enthalpy"] for run in runs.values()])
    lowest = enthalpies.min(0)
    base = runs["ours: batched BFGS (relax_structures)"]
    print("\n| method | converged | reach lowest minimum | model evaluations / structure | CPU s | CPU vs ours |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, run), h in zip(runs.items(), enthalpies):
        same = np.abs(h - lowest) <= 1e-3
        print(f"| {name} | {sum(run['converged'])}/{len(h)} | {same.sum()}/{len(h)} = {100 * same.mean():.0f}% | "
              f"{np.mean(run['evaluations']):.0f} | {run['cpu']:.1f} | {run['cpu'] / base['cpu']:.1f}× |")
    print(f"\nload average now {os.getloadavg()[0]:.1f}")
    return 0


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "none"


if __name__ == "__main__":
    sys.exit(main())
