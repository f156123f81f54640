"""Verlet (skin) neighbour lists for a batch whose cells deform: rebuild a structure's list only
when its atoms or cell moved enough that a pair could have entered the cutoff.

A structure's list is built within ``cutoff + skin`` at positions x_b and cell C_b. Later, with
cell C and positions x, write A = C_b⁻¹ C (the affine part) and u = x − x_b A (the rest). Every
edge vector is then d = d_b A + u_j − u_i, so a pair left out (|d_b| ≥ cutoff + skin) has
|d| ≥ s_min(A)·(cutoff + skin) − 2 max|u|. The list stays complete within ``cutoff`` while that
bound is ≥ ``cutoff``; otherwise only that structure's list is rebuilt (with vesin). Pairs
beyond the cutoff that the list carries are ignored by the models.
"""

from __future__ import annotations

import torch

from ..neighbors import Edges, neighbor_list
from ..state import Batch


def stale_structures(batch: Batch, built_positions: torch.Tensor, built_cell: torch.Tensor,
                     built: torch.Tensor, cutoff: float, skin: float) -> torch.Tensor:
    """(B,) bool: structures whose list (built at ``built_positions``/``built_cell``) may miss a
    pair within ``cutoff`` at the geometry of ``batch``, or was never built (``built`` false)."""
    affine = torch.linalg.solve(built_cell, batch.cell)  # C_b^-1 C
    finite = torch.isfinite(affine).flatten(1).all(1)
    eye = torch.eye(3, dtype=affine.dtype, device=affine.device).expand_as(affine)
    affine = torch.where(finite[:, None, None], affine, eye)
    affine_atoms = affine.index_select(0, batch.system_idx)
    moved = batch.positions - torch.einsum("ni,nij->nj", built_positions, affine_atoms)
    umax = torch.zeros(batch.n_systems, dtype=batch.dtype, device=batch.device).scatter_reduce(
        0, batch.system_idx, torch.linalg.norm(moved, dim=1), reduce="amax", include_self=True)
    smin = torch.linalg.svdvals(affine)[:, -1]
    safe = smin * (cutoff + skin) - 2.0 * umax >= cutoff
    return ~built | ~safe | ~torch.isfinite(umax) | ~finite


def rebuild(batch: Batch, edges: Edges | None, stale: torch.Tensor, cutoff: float) -> Edges:
    """``edges`` (global atom indices of ``batch``) with the lists of the ``stale`` structures
    replaced by fresh ones within ``cutoff``; sorted by centre."""
    systems = torch.nonzero(stale).flatten()
    sub = batch.select(systems)
    fresh = neighbor_list(sub, cutoff)
    offsets = batch.atom_offsets()
    sub_offsets = sub.atom_offsets()
    # sub atom k of sub-structure s is batch atom offsets[systems[s]] + (k - sub_offsets[s])
    shift = (offsets[systems] - sub_offsets[:-1]).index_select(0, sub.system_idx)
    to_global = torch.arange(sub.positions.shape[0], device=batch.device) + shift
    new_index = to_global[fresh.index]
    new_shifts = fresh.cell_shifts
    if edges is None or edges.n_edges == 0 or bool(stale.all()):
        return Edges(index=new_index, cell_shifts=new_shifts)
    new_shifts = new_shifts.to(edges.cell_shifts.dtype)
    # edges are sorted by centre, so by structure: each structure's block from its atom range
    old_bounds = structure_bounds(edges, offsets).tolist()
    fresh_bounds = structure_bounds(fresh, sub_offsets).tolist()
    pieces_i, pieces_s, k, start = [], [], 0, 0
    for b, is_stale in enumerate(stale.tolist()):  # runs of kept blocks as one slice each
        if is_stale:
            if old_bounds[b] > start:
                pieces_i.append(edges.index[:, start:old_bounds[b]])
                pieces_s.append(edges.cell_shifts[start:old_bounds[b]])
            pieces_i.append(new_index[:, fresh_bounds[k]:fresh_bounds[k + 1]])
            pieces_s.append(new_shifts[fresh_bounds[k]:fresh_bounds[k + 1]])
            k += 1
            start = old_bounds[b + 1]
    if start < edges.n_edges:
        pieces_i.append(edges.index[:, start:])
        pieces_s.append(edges.cell_shifts[start:])
    return Edges(index=torch.cat(pieces_i, dim=1), cell_shifts=torch.cat(pieces_s))


def structure_bounds(edges: Edges, atom_offsets: torch.Tensor) -> torch.Tensor:
    """(B+1,) where each structure's edges start in ``edges`` sorted by centre, from the atom
    offsets (B+1,): a binary search, no pass over the edges."""
    return torch.searchsorted(edges.index[0].contiguous(), atom_offsets)


def select_edges(edges: Edges | None, atom_mask: torch.Tensor) -> Edges | None:
    """The edges among the atoms kept by ``atom_mask`` (whole structures), re-indexed; ``edges``
    sorted by centre (as every list here), so each run of kept atoms is one slice of them."""
    if edges is None:
        return None
    n = atom_mask.shape[0]
    mask = atom_mask.to(torch.int8)
    change = (torch.nonzero(mask[1:] != mask[:-1]).flatten() + 1).tolist()
    bounds = [0] + change + [n]
    starts = torch.tensor(bounds, dtype=torch.long, device=edges.index.device)
    edge_bounds = torch.searchsorted(edges.index[0].contiguous(), starts).tolist()
    pieces_i, pieces_s, removed = [], [], 0
    for r in range(len(bounds) - 1):
        lo, hi = bounds[r], bounds[r + 1]
        if bool(atom_mask[lo]):
            e0, e1 = edge_bounds[r], edge_bounds[r + 1]
            pieces_i.append(edges.index[:, e0:e1] - removed)
            pieces_s.append(edges.cell_shifts[e0:e1])
        else:
            removed += hi - lo
    if not pieces_i:
        return Edges(index=edges.index[:, :0], cell_shifts=edges.cell_shifts[:0])
    return Edges(index=torch.cat(pieces_i, dim=1), cell_shifts=torch.cat(pieces_s))


def concatenate_edges(parts: list[tuple[Edges | None, int]]) -> Edges | None:
    """Join the edges of consecutive atom blocks: ``parts`` = [(edges or None, n_atoms), ...]."""
    indices, shifts, offset = [], [], 0
    for edges, n_atoms in parts:
        if edges is not None and edges.n_edges:
            indices.append(edges.index + offset)
            shifts.append(edges.cell_shifts)
        offset += n_atoms
    if not indices:
        return None
    return Edges(index=torch.cat(indices, dim=1), cell_shifts=torch.cat(shifts))
