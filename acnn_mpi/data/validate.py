"""Checks that labelled frames are usable before they enter the store.

A frame is refused when it has no atoms, no energy or no forces, forces of the wrong shape, a
non-finite energy, force, stress, position or cell, an element outside the allowed list, a
periodic cell of zero volume, or two atoms (periodic images included) closer than
:data:`MIN_DISTANCE` Å. Problems are reported by frame index; the policy says whether bad frames
are skipped (and reported) or the whole set is refused with a :class:`~acnn_mpi.errors.UserError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import UserError
from .frames import LabelKeys, frame_labels

#: Atoms closer than this (Å) mark a broken or mislabelled structure.
MIN_DISTANCE = 0.3
#: Radius (Å) of the neighbour search behind the distance check (see closest_distance).
_SEARCH_RADIUS = 1.0
#: The policies for bad frames.
POLICIES = ("skip", "refuse")
#: How many bad frames a refusal message lists before "... and K more".
_LISTED = 20


@dataclass
class ValidationReport:
    """``good``: indices of usable frames (ascending); ``bad``: index -> list of problems."""

    n_frames: int
    good: list[int] = field(default_factory=list)
    bad: dict[int, list[str]] = field(default_factory=dict)

    def messages(self, first_index: int = 0, name: str = "frame") -> list[str]:
        """One line per bad frame: '<name> <index + first_index>: problem; problem'."""
        return [f"{name} {i + first_index}: " + "; ".join(p) for i, p in sorted(self.bad.items())]

    def summary(self, first_index: int = 0, name: str = "frame", limit: int = _LISTED) -> str:
        lines = self.messages(first_index, name)
        text = "\n".join(lines[:limit])
        if len(lines) > limit:
            text += f"\n... and {len(lines) - limit} more"
        return text


def allowed_numbers(allowed_elements: Optional[Iterable]) -> Optional[set[int]]:
    if allowed_elements is None:
        return None
    from ase.data import atomic_numbers

    out = set()
    for item in allowed_elements:
        if isinstance(item, str):
            if item not in atomic_numbers or item == "X":
                raise UserError(f"allowed elements: unknown element symbol {item!r}")
            out.add(atomic_numbers[item])
        else:
            out.add(int(item))
    return out


def closest_distance(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                     cutoff: float = MIN_DISTANCE) -> float:
    """Shortest distance (Å) between two atoms or an atom and a periodic image, if below
    ``cutoff``; ``inf`` otherwise."""
    import vesin

    pbc = np.asarray(pbc, dtype=bool)
    box = np.asarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    # a cell list with bins as small as 0.3 Å is slow (tens of ms for a 60-atom cell): search a
    # wider sphere, which finds few extra pairs, and filter
    search = max(float(cutoff), _SEARCH_RADIUS)
    calculator = vesin.NeighborList(cutoff=search, full_list=False)
    (distances,) = calculator.compute(points=np.asarray(positions, dtype=np.float64), box=box,
                                      periodic=pbc.tolist(), quantities="d")
    closest = float(distances.min()) if len(distances) else float("inf")
    return closest if closest < cutoff else float("inf")


def frame_problems(atoms, label_keys: LabelKeys = LabelKeys(), allowed: Optional[set[int]] = None,
                   min_distance: float = MIN_DISTANCE) -> list[str]:
    """What makes one frame unusable (empty when it is fine)."""
    from ase.data import chemical_symbols

    n = len(atoms)
    if n == 0:
        return ["no atoms"]
    try:
        labels = frame_labels(atoms, label_keys)
    except ValueError as error:
        return [str(error)]
    problems = []
    if labels.energy is None:
        problems.append("no energy")
    elif not np.isfinite(labels.energy):
        problems.append("energy is NaN or inf")
    if labels.forces is None:
        problems.append("no forces")
    elif labels.forces.shape != (n, 3):
        problems.append(f"forces have shape {labels.forces.shape}, expected ({n}, 3)")
    elif not np.all(np.isfinite(labels.forces)):
        problems.append("forces contain NaN or inf")
    if labels.stress is not None and not np.all(np.isfinite(labels.stress)):
        problems.append("stress contains NaN or inf")
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    cell = np.asarray(atoms.get_cell(), dtype=np.float64)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(cell))):
        problems.append("positions or cell contain NaN or inf")
        return problems
    if allowed is not None:
        unknown = sorted(set(atoms.get_atomic_numbers().tolist()) - allowed)
        if unknown:
            problems.append("element(s) not allowed: " + ", ".join(
                chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z) for z in unknown))
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-6:
        problems.append("periodic cell of zero volume")
        return problems
    if min_distance > 0:
        closest = closest_distance(positions, cell, pbc, min_distance)
        if closest < min_distance:
            problems.append(f"atoms {closest:.3f} Å apart (< {min_distance} Å)")
    return problems


def validate_frames(frames: Sequence, *, allowed_elements: Optional[Iterable] = None,
                    on_bad: str = "refuse", label_keys: LabelKeys = LabelKeys(),
                    min_distance: float = MIN_DISTANCE, first_index: int = 0,
                    name: str = "frame") -> ValidationReport:
    """Check labelled ``Atoms`` frames (see the module docstring for what is checked).

    Args:
        frames: ASE ``Atoms`` with labels where ``label_keys`` says.
        allowed_elements: symbols or atomic numbers; None allows every element.
        on_bad: "skip" (report and leave out bad frames) or "refuse" (raise).
        min_distance: shortest allowed interatomic distance, Å (periodic images included).
        first_index, name: how frames are named in messages ('<name> <index + first_index>').

    Raises:
        UserError: ``on_bad == "refuse"`` and some frame is bad (the message lists them), or
            ``frames`` is empty, or the policy or an allowed element is unknown.
    """
    if on_bad not in POLICIES:
        raise UserError(f"on_bad must be one of {', '.join(POLICIES)}, got {on_bad!r}")
    allowed = allowed_numbers(allowed_elements)
    report = ValidationReport(n_frames=len(frames))
    if not frames:
        raise UserError("no frames to check (the set is empty)")
    for i, atoms in enumerate(frames):
        problems = frame_problems(atoms, label_keys, allowed, min_distance)
        if problems:
            report.bad[i] = problems
        else:
            report.good.append(i)
    if report.bad and on_bad == "refuse":
        raise UserError(f"{len(report.bad)} of {len(frames)} frames are unusable "
                        f"(use on_bad='skip' / --on-bad skip to leave them out):\n"
                        + report.summary(first_index, name))
    return report
