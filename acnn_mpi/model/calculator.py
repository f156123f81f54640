"""An ASE calculator over an ACNN model (or any model of the :mod:`acnn_mpi.model.forces` interface).

    from acnn_mpi.model.calculator import ACNNCalculator
    atoms.calc = ACNNCalculator("model.pt", device="cpu", dtype="float64")
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Units as ASE: energy eV, forces eV/Å, stress eV/Å³ in Voigt order (xx, yy, zz, yz, xz, xy),
positive = tensile.
"""

from __future__ import annotations

import copy
import os

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..state import Batch
from .forces import evaluate


class ACNNCalculator(Calculator):
    """ASE calculator for energy, free energy, forces, stress and per-atom energies.

    Args:
        model: an :class:`acnn_mpi.model.potential.ACNN` (or another atomic-energy model), or the
            path of a file written by ``ACNN.save``.
        device: torch device to evaluate on ("cpu", "cuda", ...); default: where the model is.
        dtype: "float32" / "float64" / a torch dtype to convert the model to; default: its own.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device=None, dtype=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, os.PathLike)):
            from .potential import ACNN

            model = ACNN.load(model, map_location=device or "cpu")
        elif not isinstance(model, torch.nn.Module):
            raise TypeError(f"ACNNCalculator needs a model or a model file path, got {type(model).__name__}")
        if isinstance(dtype, str):
            if dtype not in ("float32", "float64"):
                raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
            dtype = getattr(torch, dtype)
        reference = next(iter(model.buffers()), None)
        if reference is None or not reference.is_floating_point():
            reference = next(iter(model.parameters()), torch.zeros((), dtype=torch.float64))
        if (dtype is not None and dtype != reference.dtype) or (
                device is not None and torch.device(device) != reference.device):
            model = copy.deepcopy(model).to(device=device, dtype=dtype)  # leave the caller's model alone
        self.model = model
        self.device = torch.device(device) if device is not None else reference.device
        self.dtype = dtype or (reference.dtype if reference.is_floating_point() else torch.float64)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all()) and atoms.cell.volume > 0
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                "stress needs a cell periodic in all three directions with a positive volume"
            )
        batch = Batch.from_atoms([atoms], device=self.device, dtype=self.dtype)
        out = evaluate(self.model, batch, compute_forces=True, compute_stress=periodic)
        energy = float(out.energy[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out.atomic_energies.detach().cpu().double().numpy(),
            "forces": out.forces.detach().cpu().double().numpy(),
        }
        if periodic:  # computed always (cheap), so a later get_stress() needs no second call
            stress = out.stress[0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
