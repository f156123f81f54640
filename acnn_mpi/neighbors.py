"""Periodic neighbour lists for a batch of structures (vesin, one call per structure).

The list is a *full* list: every pair appears as (i, j) and (j, i). For an edge e with centre i and
neighbour j the vector is ``r_ij = x[j] - x[i] + cell_shifts[e] @ cell[system of i]``.
Neighbour lists are computed without gradients on CPU in float64; the edge vectors are then formed
in torch from the (possibly strained) positions and cells so that autograd sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .state import Batch


@dataclass
class Edges:
    """Pairs within a cutoff for a whole batch.

    Attributes:
        index: (2, E) int64, row 0 the centre atom i, row 1 the neighbour j (batch-global indices).
            :func:`neighbor_list` returns the edges sorted by centre (the model's fast path).
        cell_shifts: (E, 3) integer multiples of the lattice vectors to add to x[j], stored in the
            batch's float dtype.
    """

    index: torch.Tensor
    cell_shifts: torch.Tensor
    _shift_codes: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)
    _given: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_edges(self) -> int:
        return int(self.index.shape[1])

    def _codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(E,) index of each edge's shift into the table (K, 3) of integer shifts (cached: the
        shifts do not change while the edges are reused). The table is the whole cube
        [−reach, reach]³ when that is small (≤ 4096 shifts: the index is then arithmetic, no sort:
        torch.unique over E was ~4 % of a relaxation's CPU time), else the distinct shifts."""
        if self._shift_codes is None:
            shifts = self.cell_shifts.detach()  # integers, exact in the float type
            low, high = torch.aminmax(shifts) if shifts.numel() else (shifts.new_zeros(()), shifts.new_zeros(()))
            reach = int(max(-float(low), float(high)))
            side = 2 * reach + 1
            if side ** 3 <= 1 << 22:  # the key by one matrix-vector product, exact below 2^24
                weights = torch.tensor([side * side, side, 1], dtype=shifts.dtype, device=shifts.device)
                key = (shifts @ weights).long() + reach * (side * side + side + 1)
            else:
                whole = shifts.long() + reach
                key = (whole[:, 0] * side + whole[:, 1]) * side + whole[:, 2]
            if side ** 3 <= 4096:
                codes, unique = key, torch.arange(side ** 3, device=key.device)
            elif side ** 3 <= 1 << 22:
                # the distinct shifts by a count over the cube (O(E + side³), no sort; the same
                # sorted table and inverse as torch.unique)
                present = torch.bincount(key, minlength=side ** 3) > 0
                unique = torch.nonzero(present).flatten()
                codes = (torch.cumsum(present, 0) - 1).index_select(0, key)
            else:
                unique, codes = torch.unique(key, return_inverse=True)
            table = torch.stack([unique // (side * side), (unique // side) % side, unique % side], 1) - reach
            self._shift_codes = (codes, table)
        return self._shift_codes

    def vectors(self, positions: torch.Tensor, cell: torch.Tensor, system_idx: torch.Tensor) -> torch.Tensor:
        """(E, 3) vectors r_ij in Å, differentiable in ``positions`` (N, 3) and ``cell`` (B, 3, 3).

        For the very ``positions`` and ``cell`` tensors of :meth:`with_vectors`, the vectors
        given there (computed once per model call, shared by every term of a model)."""
        if self._given is not None and positions is self._given[0] and cell is self._given[1]:
            return self._given[2]
        i, j = self.index
        vectors = positions.index_select(0, j) - positions.index_select(0, i)
        if self.n_edges == 0:
            return vectors
        codes, table = self._codes()
        if cell.shape[0] * table.shape[0] <= self.n_edges:
            return vectors + self._image_shifts(cell, system_idx)
        return vectors + self._edge_shifts(cell, system_idx)

    def _image_shifts(self, cell: torch.Tensor, system_idx: torch.Tensor) -> torch.Tensor:
        """Lattice shifts S·h: the (B, K, 3) images of the distinct shifts, then one gather."""
        codes, table = self._codes()
        images = table.to(cell.dtype) @ cell
        flat = system_idx.index_select(0, self.index[0]) * table.shape[0] + codes
        return images.reshape(-1, 3).index_select(0, flat)

    def _edge_shifts(self, cell: torch.Tensor, system_idx: torch.Tensor) -> torch.Tensor:
        """Lattice shifts S·h edge by edge (when there are many distinct shifts)."""
        edge_cell = cell.index_select(0, system_idx.index_select(0, self.index[0]))
        return (self.cell_shifts.to(cell.dtype)[:, :, None] * edge_cell).sum(1)

    def select(self, mask: torch.Tensor) -> "Edges":
        """The edges where ``mask`` (E,) is true (bool mask or int64 indices)."""
        if mask.dtype == torch.bool:
            mask = torch.nonzero(mask).flatten()
        out = Edges(index=self.index.index_select(1, mask), cell_shifts=self.cell_shifts.index_select(0, mask))
        if self._shift_codes is not None:
            codes, table = self._shift_codes
            out._shift_codes = (codes.index_select(0, mask), table)
        return out

    def shift_virial(self, grad: torch.Tensor, cell: torch.Tensor, system_idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) Σ_e (S_e·h) ⊗ g_e over each structure's edges: the lattice-shift part of
        Σ_e r_e ⊗ g_e, for a gradient ``grad`` (E, 3) with respect to the edge vectors (the rest,
        Σ_e (x_j − x_i) ⊗ g_e, is Σ_n x_n ⊗ ∂E/∂x_n). Via the per-structure sums of g over each
        distinct shift (one scatter of (E, 3)), then hᵀ (Σ_k S_k ⊗ G_bk)."""
        b = cell.shape[0]
        if self.n_edges == 0:
            return torch.zeros(b, 3, 3, dtype=grad.dtype, device=grad.device)
        codes, table = self._codes()
        system = system_idx.index_select(0, self.index[0])
        k = table.shape[0]
        if b * k <= 4 * self.n_edges:
            per_shift = torch.zeros(b * k, 3, dtype=grad.dtype, device=grad.device)
            per_shift.index_add_(0, system * k + codes, grad)
            moments = table.to(grad.dtype).t() @ per_shift.view(b, k, 3)  # (B, 3, 3) Σ_k S_k ⊗ G_bk
        else:
            outer = (self.cell_shifts.to(grad.dtype)[:, :, None] * grad[:, None, :]).reshape(-1, 9)
            moments = torch.zeros(b, 9, dtype=grad.dtype, device=grad.device).index_add_(0, system, outer).view(b, 3, 3)
        return cell.to(grad.dtype).transpose(1, 2) @ moments

    def with_vectors(self, positions: torch.Tensor, cell: torch.Tensor, vectors: torch.Tensor) -> "Edges":
        """The same edges, whose :meth:`vectors` of exactly ``positions`` and ``cell`` (the same
        tensor objects) returns ``vectors`` (E, 3) instead of computing them. A new object: the
        vectors (and any graph they hold) live as long as it, not as long as ``self``."""
        out = Edges(index=self.index, cell_shifts=self.cell_shifts)
        out._shift_codes = self._shift_codes
        out._given = (positions, cell, vectors)
        return out


def _structure_pairs(calculator, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray):
    if not pbc.any():
        cell = np.zeros((3, 3))
    return calculator.compute(points=positions, box=cell, periodic=pbc.tolist(), quantities="ijS")


def neighbor_list(batch: Batch, cutoff: float) -> Edges:
    """Full neighbour list of every structure in ``batch`` within ``cutoff`` (Å).

    Works for any cell shape, including cells thinner than the cutoff and strongly sheared cells
    (vesin adds as many periodic images as the cutoff needs). Self-pairs are excluded; an atom's
    own periodic images are included.
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    import vesin

    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    positions = batch.positions.detach().to("cpu", torch.float64).numpy()
    cells = batch.cell.detach().to("cpu", torch.float64).numpy()
    if not (np.isfinite(positions).all() and np.isfinite(cells).all()):
        # vesin dies of SIGFPE on such input; fail in Python instead
        raise ValueError("neighbor_list: non-finite positions or cell (a diverged structure)")
    pbcs = batch.pbc.cpu().numpy()
    offsets = batch.atom_offsets().cpu().numpy()
    all_i, all_j, all_s = [], [], []
    for b in range(batch.n_systems):
        start, stop = int(offsets[b]), int(offsets[b + 1])
        i, j, s = _structure_pairs(calculator, positions[start:stop], cells[b], pbcs[b])
        order = np.argsort(i, kind="stable")
        i, j, s = i[order], j[order], s[order]
        all_i.append(i.astype(np.int64) + start)
        all_j.append(j.astype(np.int64) + start)
        all_s.append(s)
    index = np.stack([np.concatenate(all_i), np.concatenate(all_j)]) if all_i else np.zeros((2, 0), np.int64)
    shifts = np.concatenate(all_s) if all_s else np.zeros((0, 3))
    return Edges(
        index=torch.from_numpy(index).to(batch.device),
        cell_shifts=torch.from_numpy(shifts.astype(np.float64)).to(device=batch.device, dtype=batch.dtype),
    )
