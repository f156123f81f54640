"""What the relaxer calls for energies, forces and stresses: one batch in, one evaluation out.

Two adapters present different back ends through the same interface, so one optimizer code path
serves them all:

* :class:`ModelEvaluator` — an atomic-energy ``torch.nn.Module`` (ACNN, Lennard-Jones): ONE
  batched :func:`acnn_mpi.model.forces.evaluate` call for the whole batch.
* :class:`CalculatorEvaluator` — any ASE calculator (EMT, a DFT code), one structure per call; a
  calculator error on one structure is recorded for that structure, the others go on.

:func:`as_evaluator` picks the adapter; :func:`load_model` turns a command-line model spec
(``lj``, ``lj:epsilon,sigma[,cutoff]``, an ACNN model file, or an ASE calculator import path such as
``ase.calculators.emt.EMT``) into a model or calculator.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..model.forces import model_dtype_device
from ..neighbors import Edges, neighbor_list
from ..state import Batch


@dataclass
class Evaluation:
    """Energies, forces and stresses of one batch, in the batch's dtype and device.

    Attributes:
        energy: (B,) eV; forces: (N, 3) eV/Å; stress: (B, 3, 3) eV/Å³ (ASE sign, positive = tensile).
        edges: the neighbour list used (model evaluators), reusable for distance checks, or None.
        edges_cutoff: the cutoff (Å) ``edges`` is complete within.
        errors: per structure, None or the message of a failed evaluation (its numbers are NaN).
        noise: (B,) eV, the energy resolution of the back end (rounding of its float type).
    """

    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    edges: Optional[Edges] = None
    edges_cutoff: float = 0.0
    errors: Optional[list] = None
    noise: Optional[torch.Tensor] = None


class ModelEvaluator:
    """A torch atomic-energy model as a batch evaluator (one model call per batch).

    The model runs in its own float type (an ACNN in float32 stays float32); positions and cells
    are converted on the way in and the results back to the batch's type on the way out.

    Args:
        model: ``torch.nn.Module`` with ``cutoff`` and ``atomic_energies(batch, edges)``.
        device: where the model runs (default: where its parameters are, else CPU).
    """

    def __init__(self, model: torch.nn.Module, device=None):
        if not hasattr(model, "cutoff") or not hasattr(model, "atomic_energies"):
            raise TypeError(f"{type(model).__name__} is not an atomic-energy model "
                            "(needs .cutoff and .atomic_energies(batch, edges))")
        self.model = model
        self.cutoff = float(model.cutoff)
        self.model_dtype, own_device = model_dtype_device(model, default_dtype=None)
        self.device = torch.device(device) if device is not None else own_device
        if device is not None:
            self.model.to(self.device)

    def describe(self) -> str:
        return f"{type(self.model).__name__} (cutoff {self.cutoff} Å)"

    def __call__(self, batch: Batch, edges: Optional[Edges] = None) -> Evaluation:
        from ..model.forces import evaluate

        verlet = edges is not None  # a list within cutoff + skin: the skin's pairs are dropped
        if edges is None:
            edges = neighbor_list(batch, self.cutoff)
        dtype = self.model_dtype or batch.dtype
        work = batch.to(self.device, dtype)
        work_edges = edges if (edges.index.device == self.device) else Edges(
            index=edges.index.to(self.device), cell_shifts=edges.cell_shifts.to(self.device))
        out = evaluate(self.model, work, edges=work_edges, prune_edges=verlet)
        energy = out.energy.to(batch.device, batch.dtype)
        eps = torch.finfo(dtype).eps
        noise = 16.0 * eps * (energy.abs() + batch.n_atoms.to(batch.dtype))
        return Evaluation(
            energy=energy,
            forces=out.forces.to(batch.device, batch.dtype),
            stress=out.stress.to(batch.device, batch.dtype),
            edges=edges,
            edges_cutoff=self.cutoff,
            noise=noise,
        )


class CalculatorEvaluator:
    """An ASE calculator as a batch evaluator: one calculator call per structure.

    Args:
        calculator: an ASE ``Calculator`` instance (reused for every structure), or a zero-argument
            factory that makes one (called once).
    """

    cutoff = None

    def __init__(self, calculator):
        if callable(calculator) and not hasattr(calculator, "get_potential_energy"):
            calculator = calculator()
        self.calculator = calculator

    def describe(self) -> str:
        return f"ASE {type(self.calculator).__name__}"

    def __call__(self, batch: Batch, edges: Optional[Edges] = None) -> Evaluation:
        atoms_list = batch.to_atoms()
        n = len(atoms_list)
        energy = np.full(n, np.nan)
        stress = np.full((n, 3, 3), np.nan)
        forces = np.full((int(batch.positions.shape[0]), 3), np.nan)
        offsets = batch.atom_offsets().tolist()
        errors: list = [None] * n
        for b, atoms in enumerate(atoms_list):
            atoms.calc = self.calculator
            try:
                energy[b] = atoms.get_potential_energy()
                forces[offsets[b]:offsets[b + 1]] = atoms.get_forces()
                stress[b] = atoms.get_stress(voigt=False)
            except Exception as error:  # noqa: BLE001 - recorded per structure, the batch goes on
                energy[b] = np.nan
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                errors[b] = f"calculator {type(self.calculator).__name__} failed: {type(error).__name__}: {message}"[:300]
        kw = dict(dtype=batch.dtype, device=batch.device)
        energy_t = torch.tensor(energy, **kw)
        noise = 1e-12 * (energy_t.abs().nan_to_num(0.0) + batch.n_atoms.to(batch.dtype))
        return Evaluation(
            energy=energy_t,
            forces=torch.tensor(forces, **kw),
            stress=torch.tensor(stress, **kw),
            errors=errors if any(e is not None for e in errors) else None,
            noise=noise,
        )


def as_evaluator(model, device=None):
    """The evaluator for ``model``: a torch atomic-energy model, an ASE calculator (or its class),
    or anything already callable as ``evaluator(batch) -> Evaluation``."""
    if isinstance(model, (ModelEvaluator, CalculatorEvaluator)):
        return model
    if isinstance(model, torch.nn.Module):
        return ModelEvaluator(model, device=device)
    if hasattr(model, "get_potential_energy") or hasattr(model, "calculate"):
        return CalculatorEvaluator(model)
    if isinstance(model, type):  # an ASE calculator class
        return CalculatorEvaluator(model())
    if callable(model):
        return model
    raise TypeError(f"cannot relax with {model!r}: give a torch atomic-energy model or an ASE calculator")


def load_model(spec: str, device=None):
    """Model or calculator from a command-line spec.

    * ``lj`` or ``lj:epsilon,sigma[,cutoff]`` — the shifted-force Lennard-Jones model (eV, Å);
    * a path to a saved model: an ACNN file (``ACNN.save``, a training's ``model.pt``), a training
      checkpoint (its raw weights, not the averaged ones of ``model.pt``) or a committee
      (``acnn_mpi train`` with a committee);
    * ``package.module.ClassName`` — an ASE calculator class, constructed without arguments.

    Raises:
        acnn_mpi.errors.UserError: for a spec that is none of these.
    """
    from ..errors import UserError

    text = str(spec).strip()
    if text == "lj" or text.startswith("lj:"):
        from ..model.lennard_jones import LennardJones

        if text == "lj":
            return LennardJones()
        try:
            values = [float(v) for v in text[3:].split(",") if v.strip()]
        except ValueError:
            raise UserError(f"--model {spec}: write lj:epsilon,sigma[,cutoff] with numbers (eV, Å)") from None
        if not 2 <= len(values) <= 3 or any(not 0 < v < float("inf") for v in values):  # NaN too
            raise UserError(f"--model {spec}: write lj:epsilon,sigma[,cutoff] with positive finite "
                            "numbers (eV, Å)")
        return LennardJones(*values)
    if os.path.exists(text):
        from ..train.models import load_model as load_model_file

        try:
            model = load_model_file(text)
            return model.to(device) if device is not None else model
        except ValueError as error:
            raise UserError(f"--model {spec}: {error}") from None
    module_name, _, attribute = text.rpartition(".")
    if module_name and attribute:
        try:
            module = importlib.import_module(module_name)
            target = getattr(module, attribute)
        except (ImportError, AttributeError):
            target = None
        if target is not None:
            try:
                return target() if isinstance(target, type) or callable(target) else target
            except Exception as error:  # noqa: BLE001 - the user's calculator failed to start
                raise UserError(f"--model {spec}: constructing {attribute}() failed: {error}") from None
    raise UserError(
        f"--model {spec!r}: not a file, 'lj', 'lj:epsilon,sigma[,cutoff]', or an importable ASE "
        "calculator class such as ase.calculators.emt.EMT"
    )
