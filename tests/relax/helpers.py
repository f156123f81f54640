"""Shared builders for the relaxation tests (imported as tests.relax.helpers)."""

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.lennard_jones import LennardJones
from acnn_mpi.state import Batch

ARGON = dict(epsilon=0.0104, sigma=3.4, cutoff=8.5)


def lj():
    return LennardJones(**ARGON)


def fcc_energy_per_atom(model_or_calc, symbol, a):
    atoms = bulk(symbol, "fcc", a=a, cubic=True)
    if isinstance(model_or_calc, torch.nn.Module):
        return float(evaluate(model_or_calc, Batch.from_atoms([atoms]), compute_forces=False,
                              compute_stress=False).energy[0]) / len(atoms)
    atoms.calc = model_or_calc
    return atoms.get_potential_energy() / len(atoms)


def scan_lattice_constant(model_or_calc, symbol, low, high):
    """a0 minimizing the fcc energy per atom: a 1-D bounded scalar minimization."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda a: fcc_energy_per_atom(model_or_calc, symbol, a), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-7})
    return float(result.x)


def strained_fcc(symbol, a, scale, shear=0.0, rattle=0.0, seed=0, repeat=(1, 1, 1)):
    atoms = bulk(symbol, "fcc", a=a, cubic=True) * repeat
    strain = np.eye(3) * scale
    strain[0, 1] = strain[1, 0] = shear
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def random_argon(n, seed=0, nmin=4, nmax=10, volume=40.0, dmin=3.0):
    """Random triclinic argon cells with random positions at least ``dmin`` apart."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        k = int(rng.integers(nmin, nmax + 1))
        cell = np.diag(rng.uniform(0.85, 1.15, 3))
        cell[1, 0], cell[2, 0], cell[2, 1] = rng.uniform(-0.2, 0.2, 3)
        cell *= (volume * k / abs(np.linalg.det(cell))) ** (1 / 3)
        positions = []
        for _ in range(500):
            p = rng.random(3) @ cell
            if positions:
                probe = Atoms(f"Ar{len(positions) + 1}", positions=positions + [p], cell=cell, pbc=True)
                if probe.get_distances(len(positions), list(range(len(positions))), mic=True).min() < dmin:
                    continue
            positions.append(p)
            if len(positions) == k:
                break
        if len(positions) == k:
            out.append(Atoms(f"Ar{k}", positions=positions, cell=cell, pbc=True))
    return out


class ModelCalculator(Calculator):
    """A torch atomic-energy model as an ASE calculator (for comparisons with ASE's optimizers)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model):
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        out = evaluate(self.model, Batch.from_atoms([self.atoms]))
        s = out.stress[0].numpy()
        self.results = {"energy": float(out.energy[0]), "free_energy": float(out.energy[0]),
                        "forces": out.forces.numpy(), "stress": s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]}
