"""Test helpers: EMT-labelled Cu/Au frames, and a tiny atomic-energy model with the ACNN's training interface, for tests that must not depend on
the ACNN's internals: radial Chebyshev features per neighbour element, a tanh MLP, per-element
reference energies; ``save``/``load``/``set_reference_energies``/``elements``."""

from __future__ import annotations

import math

import torch
from ase.data import atomic_numbers


class StandIn(torch.nn.Module):
    def __init__(self, elements, cutoff=4.5, n_radial=6, hidden=16):
        super().__init__()
        self.elements = list(elements)
        self.cutoff = float(cutoff)
        self.n_radial = n_radial
        self.hidden = hidden
        lookup = torch.full((119,), -1, dtype=torch.long)
        for k, symbol in enumerate(self.elements):
            lookup[atomic_numbers[symbol]] = k
        self.register_buffer("lookup", lookup, persistent=False)
        n_el = len(self.elements)
        self.register_buffer("reference", torch.zeros(n_el, dtype=torch.float64))
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(n_radial * n_el * n_el, hidden), torch.nn.Tanh(),
            torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def set_reference_energies(self, energies):
        with torch.no_grad():
            for symbol, value in energies.items():
                self.reference[self.elements.index(symbol)] = value

    def atomic_energies(self, batch, edges):
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        r = vectors.norm(dim=1)
        x = r / self.cutoff
        fc = 0.5 * (torch.cos(math.pi * x) + 1.0) * (x < 1)
        n = torch.arange(self.n_radial, dtype=r.dtype, device=r.device)
        basis = torch.cos(n[None, :] * torch.arccos((2 * x - 1).clamp(-1, 1))[:, None]) * fc[:, None]
        species = self.lookup[batch.numbers]
        n_el = len(self.elements)
        i, j = edges.index
        channel = species[i] * n_el + species[j]
        feats = torch.zeros(batch.positions.shape[0], n_el * n_el, self.n_radial,
                            dtype=r.dtype, device=r.device)
        feats = feats.index_put((i, channel), basis, accumulate=True)
        out = self.mlp(feats.reshape(feats.shape[0], -1)).squeeze(-1)
        return out + self.reference.to(out.dtype)[species]

    def save(self, path):
        torch.save({"elements": self.elements, "cutoff": self.cutoff, "n_radial": self.n_radial,
                    "hidden": self.hidden, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path):
        data = torch.load(path, weights_only=False)
        model = cls(data["elements"], data["cutoff"], data["n_radial"], data["hidden"])
        model.to(data["state"]["mlp.0.weight"].dtype)
        model.load_state_dict(data["state"])
        return model


def standin_factory(model_settings, elements):
    return StandIn(elements, cutoff=model_settings.r_cut_radial)


def emt_frames(n=40, seed=0, stress_every=1):
    """``n`` rattled, strained fcc Cu, Au and CuAu (L1₀/random) cells labelled with ASE's EMT.

    Every ``stress_every``-th frame keeps its stress label (others have none).
    """
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        kind = k % 3
        if kind == 0:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        elif kind == 1:
            atoms = bulk("Au", "fcc", a=4.08, cubic=True)
        else:
            atoms = bulk("Cu", "fcc", a=3.85, cubic=True)
            symbols = np.array(["Cu"] * 4)
            symbols[rng.permutation(4)[: rng.integers(1, 4)]] = "Au"
            atoms.set_chemical_symbols(symbols.tolist())
        if rng.random() < 0.5:
            atoms = atoms.repeat((2, 1, 1))
        strain = np.eye(3) + rng.normal(0, 0.03, (3, 3))
        atoms.set_cell(atoms.get_cell() @ strain, scale_atoms=True)
        atoms.rattle(stdev=0.08, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if k % stress_every == 0:
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


#: A small float64 ACNN and a short, fast schedule for tests (a campaign YAML mapping).
SMALL = {
    "elements": ["Cu", "Au"],
    "model": {"dtype": "float64", "device": "cpu", "r_cut_radial": 4.5, "r_cut_angular": 4.0,
              "n_radial": 8, "n_angular": 6, "l_max": 2, "embedding": [16, 16], "fitting": [32, 32]},
    "training": {"steps": 200, "batch_size": 4, "learning_rate": 0.01, "lr_decay": 0.5,
                 "decay_steps": 70, "p_energy": 10.0, "p_force_start": 10.0, "p_force_end": 1.0,
                 "p_virial": 0.1, "validation_fraction": 0.25, "log_every": 25,
                 "validate_every": 50, "checkpoint_every": 1000, "seed": 0,
                 "ema_decay": None},  # the tests of the EMA set it
}


def small_config(**training):
    """The SMALL campaign settings with ``training`` overrides, as a CampaignConfig."""
    from acnn_mpi.config import config_from_dict

    data = {**SMALL, "training": {**SMALL["training"], **training}}
    return config_from_dict(data)


def write_small_yaml(path, **training):
    import yaml

    data = {**SMALL, "training": {**SMALL["training"], **training}}
    path.write_text(yaml.safe_dump(data))
    return path


def import_script(name: str):
    """The module of ``scripts/NAME.py`` (the benchmark scripts import each other from scripts/)."""
    import importlib
    import sys
    from pathlib import Path

    scripts = str(Path(__file__).resolve().parents[2] / "scripts")
    sys.path.insert(0, scripts)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(scripts)
