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
from . import kernels
from .descriptor import first_derivatives_only

_ALLOCATOR = {"tuned": False}
TUNE_ALLOCATOR = True  # evaluate() calls keep_freed_memory() once (False: leave malloc alone)


def model_dtype_device(model: torch.nn.Module, default_dtype: Optional[torch.dtype] = torch.float64,
                       default_device="cpu") -> tuple[Optional[torch.dtype], torch.device]:
    """The float dtype of a model's first floating parameter or buffer and the device of its first
    tensor; the defaults where it has none (``default_dtype=None``: run in the batch's type)."""
    tensors = list(model.parameters()) + list(model.buffers())
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), default_dtype)
    device = tensors[0].device if tensors else torch.device(default_device)
    return dtype, device


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
    prune_edges: bool = False,
) -> PotentialOutput:
    """Energy, forces and stress of every structure in ``batch`` in one model call.

    Args:
        model: an atomic-energy model (see the module docstring).
        batch: B structures, N atoms.
        compute_forces / compute_stress: which derivatives to return.
        create_graph: keep the graph of the derivatives (training on forces and virials).
        edges: a neighbour list for ``batch`` within ``model.cutoff``; built here when None.
        prune_edges: drop the pairs of ``edges`` at or beyond ``model.cutoff`` before the model
            sees them (a Verlet list's skin: the models ignore those pairs, so the results are
            the same, at less work per pair).

    With forces and without ``create_graph``, the edge vectors are formed once, without autograd,
    and the energy is differentiated with respect to them (g_e = ∂E/∂r_e): F = Σ over the edges of
    each atom (+g as centre, −g as neighbour) and ∂E/∂ε = Σ_e r_e ⊗ g_e per structure, the same
    derivatives as the strain of the module docstring (r_e(ε) = r_e (I + ε)), with no autograd
    through the gathers.
    Every term of a model that calls ``edges.vectors(batch.positions, batch.cell, ...)`` gets these
    vectors; anything else a model does with positions or cell still reaches them by autograd.
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
    vectors = None
    if compute_forces and not create_graph:
        edges, vectors, by_helpers = _edge_vectors(model, batch, edges, prune_edges)
        # a view, not the leaf itself: module hooks that track the backward (FlopCounterMode's)
        # cannot take a leaf among autograd.grad's inputs
        vectors = vectors.view_as(vectors)
        edges = edges.with_vectors(positions_used, cell_used, vectors)
        inputs.append(vectors)
    elif prune_edges:
        edges = _edge_vectors(model, batch, edges, True)[0]
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
        if vectors is not None:
            grads = _add_edge_derivatives(grads, inputs, batch, edges, vectors, compute_stress, by_helpers)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        if compute_forces:
            forces = -grads[0]
        if compute_stress:
            d_strain = grads[1]
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


def _edge_vectors(model, batch: Batch, edges: Edges, prune: bool):
    """(edges, their vectors (E, 3) as a leaf that requires grad, whether the C++ helpers made
    them), without the pairs at or beyond ``model.cutoff`` when ``prune``. The margin of 1e-6
    relative keeps every pair that the model, rounding in its own float type, could still see
    inside its cutoff. With the C++ kernels on, one pass forms, measures and keeps the vectors."""
    positions, cell = batch.positions.detach(), batch.cell.detach()
    limit = float(model.cutoff) * (1.0 + 1e-6)
    helpers = _helpers_for(positions, edges) if prune else None
    with torch.no_grad():
        if helpers is not None:
            vectors, index, shifts = helpers.prune_edge_vectors(
                positions.contiguous(), edges.index.contiguous(), edges.cell_shifts.contiguous(),
                cell.contiguous(), batch.system_idx.contiguous(), limit * limit)
            return Edges(index=index, cell_shifts=shifts), vectors.requires_grad_(True), True
        vectors = edges.vectors(positions, cell, batch.system_idx)
        if prune and edges.n_edges:
            keep = torch.nonzero((vectors * vectors).sum(1) < limit * limit).flatten()
            if keep.shape[0] < edges.n_edges:
                edges, vectors = edges.select(keep), vectors.index_select(0, keep)
    return edges, vectors.requires_grad_(True), False


def _helpers_for(positions: torch.Tensor, edges: Edges):
    """The C++ edge helpers where they apply (kernels on, CPU, float32/64, float64 shifts)."""
    helpers = kernels.edge_helpers()
    if helpers is None or positions.device.type != "cpu" or positions.dtype not in (torch.float32, torch.float64) \
            or edges.cell_shifts.dtype != torch.float64:
        return None
    return helpers


def _add_edge_derivatives(grads, inputs, batch: Batch, edges: Edges, vectors: torch.Tensor,
                          compute_stress: bool, by_helpers: bool = False) -> list:
    """[∂E/∂x (N, 3), ∂E/∂ε (B, 3, 3)] with the edge-vector gradient g (E, 3) added to the
    direct ones (None where the model used positions or cell only through the edge vectors).

    r_e = x_j − x_i + S_e·h: ∂E/∂x_n = Σ_{e: j=n} g_e − Σ_{e: i=n} g_e, and
    Σ_e r_e ⊗ g_e = Σ_n x_n ⊗ ∂E/∂x_n + Σ_e (S_e·h) ⊗ g_e (no (E, 3, 3) products).
    ``by_helpers``: the edges came from the C++ pass; one more C++ pass then makes both sums."""
    g = grads[-1]
    d_positions, d_strain = grads[0], (grads[1] if compute_stress else None)
    if g is not None:
        shift_part = None
        if by_helpers:
            from_edges, moments = kernels.edge_helpers().scatter_edge_gradient(
                g.contiguous(), edges.index.contiguous(), edges.cell_shifts, batch.system_idx.contiguous(),
                int(inputs[0].shape[0]), batch.n_systems)
            if compute_stress:
                shift_part = batch.cell.detach().to(g.dtype).transpose(1, 2) @ moments
        else:
            i, j = edges.index
            zeros = torch.zeros(inputs[0].shape, dtype=g.dtype, device=g.device)
            from_edges = zeros.index_add(0, j, g) - zeros.index_add(0, i, g)
        if compute_stress:
            if shift_part is None:
                shift_part = edges.shift_virial(g, batch.cell.detach(), batch.system_idx)
            positions = batch.positions.detach().to(g.dtype)
            per_atom = (positions[:, :, None] * from_edges[:, None, :]).reshape(-1, 9)
            moments = torch.zeros(batch.n_systems, 9, dtype=g.dtype, device=g.device)
            moments = moments.index_add_(0, batch.system_idx, per_atom).view(-1, 3, 3) + shift_part
            d_strain = moments if d_strain is None else d_strain + moments.to(d_strain.dtype)
        from_edges = from_edges.to(inputs[0].dtype)
        d_positions = from_edges if d_positions is None else d_positions + from_edges
    return [d_positions] + ([d_strain] if compute_stress else [])
