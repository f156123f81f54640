"""Per-element reference energies: least squares of total energy against element counts.

E_i ≈ Σ_Z c_iZ e_Z over the training structures i (c_iZ atoms of element Z). The network then only
has to learn what the composition alone does not explain, which keeps its outputs small and makes
the energy term of the loss well scaled from the first step. Elements that never vary independently
(always in the same ratio) make the system rank deficient; the minimum-norm solution is used then,
which still reproduces every training composition's mean energy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .frames import Frame


def composition_matrix(frames: Sequence[Frame], numbers: Sequence[int]) -> np.ndarray:
    """(n_frames, n_elements) atom counts of each element (in the order of ``numbers``)."""
    column = {int(z): k for k, z in enumerate(numbers)}
    counts = np.zeros((len(frames), len(numbers)))
    for i, frame in enumerate(frames):
        for z, c in zip(*np.unique(frame.numbers, return_counts=True)):
            counts[i, column[int(z)]] = c
    return counts


def fit_reference_energies(frames: Sequence[Frame], numbers: Sequence[int]) -> dict[int, float]:
    """Atomic number -> reference energy (eV per atom) minimizing Σ_i (E_i − Σ_Z c_iZ e_Z)².

    Elements listed in ``numbers`` but absent from every frame get 0.
    """
    if not frames:
        raise ValueError("no frames to fit reference energies to")
    counts = composition_matrix(frames, numbers)
    energies = np.array([f.energy for f in frames], dtype=np.float64)
    present = counts.sum(axis=0) > 0
    solution = np.zeros(len(numbers))
    if present.any():
        solution[present] = np.linalg.lstsq(counts[:, present], energies, rcond=None)[0]
    return {int(z): float(e) for z, e in zip(numbers, solution)}


def per_atom_baseline_rmse(frames: Sequence[Frame], references: dict[int, float]) -> float:
    """Energy RMSE (eV/atom) of the composition-only model E = Σ_Z c_Z e_Z (a baseline to beat)."""
    errors = [(f.energy - sum(references[int(z)] for z in f.numbers)) / f.n_atoms for f in frames]
    return float(np.sqrt(np.mean(np.square(errors))))
