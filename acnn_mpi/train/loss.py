"""The training loss (paper Eq. 16) and its schedule (learning rate and force prefactor).

Eq. 16, per minibatch of N_B whole structures with N_i atoms each:

    L = (1/N_B) Σ_i [ p_e |ΔE_i|²/N_i + p_f ‖ΔF_i‖²/(3 N_i) + p_w ‖ΔW_i‖²/(3 N_i) ]

with ΔE in eV, ‖ΔF_i‖² the sum of squared force-component errors over the structure's atoms (eV²/Å²)
and ‖ΔW_i‖² the squared Frobenius norm of the 3×3 virial error (eV², W = -V σ). A structure without
a stress label contributes no virial term (and one without forces no force term); it still counts
in N_B.

Schedule (:class:`Schedule`), on the optimizer-step clock t = 0, 1, ...:

    lr(t)  = lr₀ · lr_decay^⌊t / decay_steps⌋                (staircase, as DeePMD's "exp")
    p_f(t) = p_f,end + (p_f,start − p_f,end) · lr(t)/lr₀     (DeePMD's prefactor rule)

so p_f starts at p_f,start and falls by the same factor steps as the learning rate, towards p_f,end.
In a campaign the clock t runs on over the refinements (refinement k starts where the training of
model k−1 stopped; ``clock_start`` in the checkpoint), so with the paper's numbers (×0.97 every 10⁴
steps, 10⁵ steps per iteration) lr and p_f fall over the whole campaign: after 19 iterations
lr = 0.97¹⁹⁰ lr₀ = 0.003 lr₀ and p_f = 0.13, as the paper's p_f 10 → 0.1. One training alone ends
at 0.737 lr₀ and p_f = 7.4.

A structure's terms are multiplied by its weight (``Targets.weight``, 1 by default; below 1 for a
collapsed cell, :func:`~acnn_mpi.train.frames.collapsed_weights`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from ..model.forces import PotentialOutput
from .frames import Targets


@dataclass
class Schedule:
    """Learning rate and loss prefactors as functions of the schedule clock t (optimizer steps).

    ``kind``: "staircase" (lr₀ · lr_decay^⌊t/decay_steps⌋), "exponential" (the same without the
    floor) or "cosine" (lr_min + (lr₀ − lr_min)(1 + cos(π τ/period))/2 with lr_min =
    lr_min_ratio · lr₀ and τ = (t − origin) mod period: warm restarts every ``period`` steps). The
    prefactors follow DeePMD's rule on the factor f(t) = lr(t)/lr₀:
    p(t) = p_end + (p_start − p_end) · f(t), for p_f (p_force_start → p_force_end) and p_e
    (p_energy → p_energy_end; constant when p_energy_end is None).
    """

    learning_rate: float
    lr_decay: float
    decay_steps: int
    p_energy: float
    p_force_start: float
    p_force_end: float
    p_virial: float
    staircase: bool = True
    kind: str = "staircase"
    lr_min_ratio: float = 0.0
    period: int = 1
    origin: int = 0
    p_energy_end: Optional[float] = None

    @classmethod
    def from_settings(cls, training, total_steps: int = 1, origin: int = 0) -> "Schedule":
        """From :class:`acnn_mpi.config.TrainingSettings`; ``total_steps`` (this training's steps)
        and ``origin`` (its clock at step 0) place the cosine cycles (``training.lr_cycles`` of
        them in the training)."""
        kind = getattr(training, "lr_schedule", "staircase")
        cycles = getattr(training, "lr_cycles", 1)
        return cls(learning_rate=training.learning_rate, lr_decay=training.lr_decay,
                   decay_steps=training.decay_steps, p_energy=training.p_energy,
                   p_force_start=training.p_force_start, p_force_end=training.p_force_end,
                   p_virial=training.p_virial, staircase=kind != "exponential", kind=kind,
                   lr_min_ratio=getattr(training, "lr_min_ratio", 0.0),
                   period=max(1, math.ceil(max(int(total_steps), 1) / cycles)), origin=int(origin),
                   p_energy_end=getattr(training, "p_energy_end", None))

    def decay_factor(self, step: int) -> float:
        """lr(step)/lr₀."""
        if self.kind == "cosine":
            phase = ((step - self.origin) % self.period) / self.period
            return self.lr_min_ratio + (1.0 - self.lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * phase))
        exponent = step // self.decay_steps if self.staircase else step / self.decay_steps
        return math.pow(self.lr_decay, exponent)

    def lr(self, step: int) -> float:
        return self.learning_rate * self.decay_factor(step)

    def prefactors(self, step: int) -> tuple[float, float, float]:
        """(p_e, p_f, p_w) at ``step``."""
        factor = self.decay_factor(step)
        p_f = self.p_force_end + (self.p_force_start - self.p_force_end) * factor
        p_e = self.p_energy
        if self.p_energy_end is not None:
            p_e = self.p_energy_end + (self.p_energy - self.p_energy_end) * factor
        return p_e, p_f, self.p_virial

    def state_dict(self) -> dict:
        return asdict(self)


@dataclass
class LossParts:
    """Sums over a (local) minibatch, before dividing by the global N_B.

    total: Σ_i of the weighted per-structure loss (a tensor with a graph);
    energy / forces / virial: Σ_i of the unweighted terms |ΔE|²/N, ‖ΔF‖²/3N, ‖ΔW‖²/3N (floats).
    """

    total: torch.Tensor
    energy: float
    forces: float
    virial: float


def structure_terms(output: PotentialOutput, targets: Targets,
                    energy_per_atom: bool = False) -> tuple[torch.Tensor, ...]:
    """Per-structure (B,) terms |ΔE|²/N (or (ΔE/N)² with ``energy_per_atom``), ‖ΔF‖²/3N and
    ‖ΔW‖²/3N (zero where the label is missing)."""
    n = targets.n_atoms
    # totals in float64 (the model returns them so: DFT-sized energies); the per-structure sums of
    # a float32 model's force and virial errors are promoted to it
    energy_term = (output.energy.double() - targets.energy.double()) ** 2 / n.double()
    if energy_per_atom:
        energy_term = energy_term / n.double()
    force_term = torch.zeros_like(energy_term)
    if output.forces is not None and bool(targets.has_forces.any()):
        squared = ((output.forces - targets.forces) ** 2).sum(dim=1).double()
        per_structure = torch.zeros_like(energy_term).index_add(0, targets.system_idx, squared)
        force_term = torch.where(targets.has_forces, per_structure / (3 * n), force_term)
    virial_term = torch.zeros_like(energy_term)
    if output.virial is not None and bool(targets.has_virial.any()):
        squared = ((output.virial - targets.virial) ** 2).sum(dim=(1, 2)).double()
        virial_term = torch.where(targets.has_virial, squared / (3 * n), virial_term)
    return energy_term, force_term, virial_term


def loss_sum(output: PotentialOutput, targets: Targets, p_e: float, p_f: float, p_w: float,
             energy_per_atom: bool = False) -> LossParts:
    """Σ over the structures of ``targets`` of the Eq. 16 summand (divide by N_B for the loss), each
    structure's terms times its ``targets.weight`` (1 unless a collapsed cell is down-weighted);
    ``energy_per_atom``: the energy term is (ΔE/N)² (``training.energy_loss: per_atom``)."""
    energy_term, force_term, virial_term = structure_terms(output, targets, energy_per_atom)
    if targets.weight is not None:
        energy_term, force_term, virial_term = (t * targets.weight
                                                for t in (energy_term, force_term, virial_term))
    total = (p_e * energy_term + p_f * force_term + p_w * virial_term).sum()
    return LossParts(total=total, energy=float(energy_term.detach().sum()),
                     forces=float(force_term.detach().sum()), virial=float(virial_term.detach().sum()))


def eq16_loss(output: PotentialOutput, targets: Targets, p_e: float, p_f: float, p_w: float,
              energy_per_atom: bool = False) -> torch.Tensor:
    """Eq. 16 for one whole minibatch (the mean over its structures)."""
    return loss_sum(output, targets, p_e, p_f, p_w, energy_per_atom).total / targets.energy.shape[0]
