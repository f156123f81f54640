"""Validation errors of a model on labelled frames: RMSE and MAE of energy, forces and stress.

Units (the keys of :func:`evaluate_errors`' result):

- ``energy_rmse`` / ``energy_mae``: meV/atom, over structures, of (E_pred − E_ref)/N;
- ``force_rmse`` / ``force_mae``: meV/Å, over every force component of every labelled atom;
- ``stress_rmse`` / ``stress_mae``: GPa, over the six Voigt components (xx yy zz yz xz xy) of every
  structure with a stress label (None when no frame has one).

The same function serves the held-out split during training and the campaign's learning curve
(model n−1 on the labels of iteration n). Given a communicator, the frames are shared among the
ranks and the sums reduced, so every rank gets the same result.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..model.forces import evaluate, model_dtype_device
from ..units import EV_PER_A3_IN_GPA
from .frames import Frame, FrameBatcher, load_frames

METRIC_UNITS = {"energy_rmse": "meV/atom", "energy_mae": "meV/atom", "force_rmse": "meV/Å",
                "force_mae": "meV/Å", "stress_rmse": "GPa", "stress_mae": "GPa"}

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def error_sums(model: torch.nn.Module, batcher: FrameBatcher, indices: Sequence[int],
               batch_size: int = 16) -> np.ndarray:
    """Sums needed for the metrics over frames ``indices`` of ``batcher`` (see :func:`_finish`)."""
    sums = np.zeros(10)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        batch, edges, targets = batcher.batch(chunk)
        want_stress = bool(targets.has_virial.any())
        out = evaluate(model, batch, compute_forces=True, compute_stress=want_stress, edges=edges)
        n = targets.n_atoms.detach().double()
        de = ((out.energy.detach().double() - targets.energy.double()) / n).cpu().numpy()
        sums[0] += len(chunk)
        sums[1] += float(np.sum(de ** 2))
        sums[2] += float(np.sum(np.abs(de)))
        atom_has_forces = targets.has_forces[targets.system_idx]
        df = (out.forces.detach().double() - targets.forces.double())[atom_has_forces].cpu().numpy()
        sums[3] += df.size
        sums[4] += float(np.sum(df ** 2))
        sums[5] += float(np.sum(np.abs(df)))
        if want_stress:
            mask = targets.has_virial
            volume = batch.volume.detach().double()[mask]
            reference = -targets.virial.double()[mask] / volume[:, None, None]
            ds = (out.stress.detach().double()[mask] - reference).cpu().numpy()
            ds = np.stack([ds[:, i, j] for i, j in _VOIGT], axis=1) * EV_PER_A3_IN_GPA
            sums[6] += ds.size
            sums[7] += float(np.sum(ds ** 2))
            sums[8] += float(np.sum(np.abs(ds)))
        sums[9] += float(targets.n_atoms.sum())
    return sums


def _finish(sums: np.ndarray) -> dict[str, Any]:
    n_frames, e2, e1, nf, f2, f1, ns, s2, s1, n_atoms = sums.tolist()

    def rms(total, count, scale=1.0):
        return math.sqrt(total / count) * scale if count else None

    def mean(total, count, scale=1.0):
        return total / count * scale if count else None

    return {
        "n_frames": int(n_frames), "n_atoms": int(n_atoms), "n_stress_frames": int(ns // 6),
        "energy_rmse": rms(e2, n_frames, 1000.0), "energy_mae": mean(e1, n_frames, 1000.0),
        "force_rmse": rms(f2, nf, 1000.0), "force_mae": mean(f1, nf, 1000.0),
        "stress_rmse": rms(s2, ns), "stress_mae": mean(s1, ns),
    }


def evaluate_errors(model: torch.nn.Module, frames_or_store: Any, *,
                    indices: Optional[Sequence[int]] = None, batch_size: int = 16, comm=None,
                    batcher: Optional[FrameBatcher] = None) -> dict[str, Any]:
    """RMSE and MAE of ``model`` against the labels of ``frames_or_store``.

    Args:
        model: an atomic-energy model (``cutoff``, ``atomic_energies``), e.g. an ACNN.
        frames_or_store: a frame store or its path, an extxyz path, a list of ASE ``Atoms`` with
            labels, or a list of :class:`~acnn_mpi.train.frames.Frame`.
        indices: a subset of the frames (default all).
        batch_size: structures per model call.
        comm: share the frames among its ranks (every rank must call); None = this process alone.
        batcher: reuse a :class:`FrameBatcher` (its cached neighbour lists) instead of loading.

    Returns:
        ``n_frames``, ``n_atoms``, ``n_stress_frames`` and ``energy_rmse``/``energy_mae``
        (meV/atom), ``force_rmse``/``force_mae`` (meV/Å), ``stress_rmse``/``stress_mae`` (GPa,
        None without stress labels); every value is None for an empty set.
    """
    dtype, device = model_dtype_device(model)
    if batcher is None:
        frames: list[Frame] = load_frames(frames_or_store, indices)
        batcher = FrameBatcher(frames, model.cutoff, dtype=dtype, device=device)
        chosen = list(range(len(frames)))
    else:
        chosen = list(range(len(batcher))) if indices is None else [int(i) for i in indices]
    if comm is not None and comm.size > 1:
        chosen = chosen[comm.rank::comm.size]
    was_training = model.training
    model.eval()
    try:
        sums = error_sums(model, batcher, chosen, batch_size)
    finally:
        model.train(was_training)
    if comm is not None and comm.size > 1:
        sums = np.asarray(comm.allreduce(sums), dtype=np.float64)
    return _finish(sums)
