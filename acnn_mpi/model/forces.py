"""Forces, stress and virial of any atomic-energy model, by autograd through a strain.

A model for this module is a ``torch.nn.Module`` with a ``cutoff`` (Å) attribute and a method
``atomic_energies(batch, edges) -> (N,)`` in eV, which must build its edge vectors from
``edges.vectors(batch.positions, batch.cell, batch.system_idx)`` so that derivatives flow.

The displacement trick: positions and cell are multiplied by (I + ε) with ε = 0 a per-structure
(B, 3, 3) tensor that requires grad. Then F = -∂E/∂x, the virial W = -∂E/∂ε (symmetrized) and
ASE's stress σ = (1/V) ∂E/∂ε, so forces and stress are exact derivatives of the same energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..neighbors import Edges, neighbor_list
from ..state import Batch
from .descriptor import first_derivatives_only

_ALLOCATOR = {"tuned": False}
TUNE_ALLOCATOR = True  # evaluate() calls keep_freed_memory() once (False: leave malloc alone)


def keep_freed_memory(enabled: bool = True) -> bool:
    """Let glibc's malloc reuse freed blocks of any size instead of returning them to the system.

    By default blocks above a (dynamic) threshold are mmap'ed and unmapped on free, so every model
    call page-faults its large temporaries in again (≈12,000 faults per call of 900 atoms, ~20 % of
    its CPU time, as system time). Raising the mmap and trim thresholds keeps them in the heap
    (the process keeps its peak working set). Returns False where glibc is not the allocator.
    ``enabled=False`` restores glibc's defaults. Called once by :func:`evaluate`.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    if enabled:
        ok = mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, 1 << 30)
    else:
        ok = mallopt(m_mmap_threshold, 128 * 1024) and mallopt(m_trim_threshold, 128 * 1024)
    _ALLOCATOR["tuned"] = True
    return bool(ok)


@dataclass
class PotentialOutput:
    """Result of one batched evaluation.

    Attributes:
        energy: (B,) total energy of each structure, eV.
        forces: (N, 3) eV/Å, or None when not asked for.
        stress: (B, 3, 3) eV/Å³ in ASE's sign convention (positive = tensile), or None.
        virial: (B, 3, 3) eV, W = -V σ, or None.
        atomic_energies: (N,) eV.
    """

    energy: torch.Tensor
    forces: Optional[torch.Tensor]
    stress: Optional[torch.Tensor]
    virial: Optional[torch.Tensor]
    atomic_energies: torch.Tensor


def evaluate(
    model: torch.nn.Module,
    batch: Batch,
    *,
    compute_forces: bool = True,
    compute_stress: bool = True,
    create_graph: bool = False,
    edges: Optional[Edges] = None,
) -> PotentialOutput:
    """Energy, forces and stress of every structure in ``batch`` in one model call.

    Args:
        model: an atomic-energy model (see the module docstring).
        batch: B structures, N atoms.
        compute_forces / compute_stress: which derivatives to return.
        create_graph: keep the graph of the derivatives (training on forces and virials).
        edges: a neighbour list for ``batch`` within ``model.cutoff``; built here when None.
    """
    if TUNE_ALLOCATOR and not _ALLOCATOR["tuned"]:
        keep_freed_memory()
    if edges is None:
        edges = neighbor_list(batch, model.cutoff)
    positions = batch.positions.detach()
    cell = batch.cell.detach()
    inputs = []
    if compute_forces:
        positions = positions.clone().requires_grad_(True)
        inputs.append(positions)
    strain = None
    if compute_stress:
        strain = torch.zeros_like(cell).requires_grad_(True)
        deformation = torch.eye(3, dtype=cell.dtype, device=cell.device) + strain
        positions_used = torch.einsum("ni,nij->nj", positions, deformation[batch.system_idx])
        cell_used = torch.bmm(cell, deformation)
        inputs.append(strain)
    else:
        positions_used, cell_used = positions, cell
    # without create_graph the derivatives are never differentiated again: fused backward; and
    # when they are taken here, the graph is spent by them (no parameter gradients later)
    with first_derivatives_only(not create_graph, parameter_gradients=create_graph or not inputs):
        atomic = model.atomic_energies(batch.with_geometry(positions_used, cell_used), edges)
    energy = torch.zeros(batch.n_systems, dtype=atomic.dtype, device=atomic.device)
    energy = energy.index_add(0, batch.system_idx, atomic)
    forces = stress = virial = None
    if inputs:
        grads = torch.autograd.grad(
            energy.sum(), inputs, create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        if compute_forces:
            forces = -grads[0]
        if compute_stress:
            d_strain = grads[-1]
            d_strain = 0.5 * (d_strain + d_strain.transpose(1, 2))
            virial = -d_strain
            volume = torch.linalg.det(cell).abs()
            safe = torch.where(volume > 0, volume, torch.ones_like(volume))
            stress = torch.where(
                (volume > 0)[:, None, None], d_strain / safe[:, None, None], torch.zeros_like(d_strain)
            )
    if inputs and not create_graph:  # the graph is spent; do not hand out tensors that hold it
        energy, atomic = energy.detach(), atomic.detach()
    return PotentialOutput(energy=energy, forces=forces, stress=stress, virial=virial, atomic_energies=atomic)
