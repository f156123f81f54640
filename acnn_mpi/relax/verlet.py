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
    if edges is not None:
        new_shifts = new_shifts.to(edges.cell_shifts.dtype)
    n = batch.n_systems
    old_counts = torch.bincount(batch.system_idx[edges.index[0]], minlength=n)
    stale_list = stale.tolist()
    first_stale = stale_list.index(True)
    if all(stale_list[first_stale:]):
        # the stale structures are a suffix of the batch (newcomers): keep the head, append
        head = int(old_counts[:first_stale].sum())
        index = torch.cat([edges.index[:, :head], new_index], dim=1)
        shifts = torch.cat([edges.cell_shifts[:head], new_shifts])
        return Edges(index=index, cell_shifts=shifts)
    # general case: per-structure blocks (edges are sorted by centre, so by structure), no sort
    new_counts = torch.zeros(n, dtype=torch.long, device=batch.device)
    new_counts[systems] = torch.bincount(sub.system_idx[fresh.index[0]], minlength=len(systems))
    old_index = torch.split(edges.index, old_counts.tolist(), dim=1)
    old_shifts = torch.split(edges.cell_shifts, old_counts.tolist())
    fresh_index = torch.split(new_index, new_counts[systems].tolist(), dim=1)
    fresh_shifts = torch.split(new_shifts, new_counts[systems].tolist())
    pieces_i, pieces_s, k = [], [], 0
    for b in range(n):
        if stale_list[b]:
            pieces_i.append(fresh_index[k])
            pieces_s.append(fresh_shifts[k])
            k += 1
        else:
            pieces_i.append(old_index[b])
            pieces_s.append(old_shifts[b])
    index, shifts = torch.cat(pieces_i, dim=1), torch.cat(pieces_s)
    return Edges(index=index, cell_shifts=shifts)


def select_edges(edges: Edges | None, atom_mask: torch.Tensor) -> Edges | None:
    """The edges among the atoms kept by ``atom_mask`` (whole structures), re-indexed."""
    if edges is None:
        return None
    new_index = torch.cumsum(atom_mask.long(), 0) - 1
    keep = atom_mask[edges.index[0]]
    return Edges(index=new_index[edges.index[:, keep]], cell_shifts=edges.cell_shifts[keep])


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
