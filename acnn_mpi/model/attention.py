"""Neighbourhood self-attention (paper Eqs. 13-15), batched over all atoms of a batch.

Each atom i attends to itself and to its neighbours j within the radial cutoff (periodic images
included; an image shares the features of the atom it images). Per head,

    S_ij = f_c(r_ij) · cos(q_i, k_j) / τ,       τ = 0.01 + softplus(p) > 0.01 (trainable),
    α_ij = f_c(r_ij) e^{S_ij} / (e^{S_ii} + Σ_k f_c(r_ik) e^{S_ik}),
    h_i  = α_ii v_i + Σ_j α_ij v_j,             x_i ← x_i + W_O [h_i of all heads].

The extra factor f_c in the weights (besides the one in the score, Eq. 15) makes a neighbour's
weight go to zero as it reaches the cutoff, so energy and forces stay continuous; the self term
keeps the normalization well defined for an atom without neighbours.

Because all images of j share q_j, k_j, v_j, cos(q_i, k_j) is computed once per atom pair of a
structure as a dense (n × n) matrix product, and the weights of the images are summed per pair
before the product with V: per-edge work is a few numbers per head, not a feature vector. For very
large structures (where n² pairs would outnumber the edges) the per-edge gather is used instead.
Shapes: N atoms, M neighbour slots per atom, B structures, H heads, d feature width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PairLayout:
    """Where atoms and neighbour pairs live in per-structure dense (n_max × n_max) tables.

    Attributes:
        atom_slot: (N,) row b·n_max + local index of each atom.
        pair_slot: (N, M) b·n_max² + local(i)·n_max + local(j) of each neighbour entry.
        n_systems, n_max: B and the largest structure size.
    """

    atom_slot: torch.Tensor
    pair_slot: torch.Tensor
    n_systems: int
    n_max: int

    @classmethod
    def build(cls, system_idx: torch.Tensor, neighbour: torch.Tensor, n_systems: int) -> "PairLayout | None":
        """The layout for atoms with ``system_idx`` (N,) and neighbour table (N, M), or None when
        the dense tables would be larger than the per-edge work (large structures)."""
        counts = torch.bincount(system_idx, minlength=n_systems)
        n_max = int(counts.max()) if system_idx.numel() else 1
        n_atoms, width = neighbour.shape
        if n_systems * n_max * n_max > 4 * max(n_atoms * width, 1):
            return None
        local = torch.arange(n_atoms, device=system_idx.device) - (torch.cumsum(counts, 0) - counts)[system_idx]
        atom_slot = system_idx * n_max + local
        pair_slot = (atom_slot * n_max)[:, None] + local[neighbour]
        return cls(atom_slot=atom_slot, pair_slot=pair_slot, n_systems=n_systems, n_max=n_max)


class NeighborAttention(torch.nn.Module):
    """One multi-head attention module with a residual update of the atom features.

    Args:
        dim: feature width d (divisible by ``heads``).
        heads: number of heads H.
        tau: initial temperature τ (> 0.01).
    """

    def __init__(self, dim: int, heads: int, tau: float = 0.5, dtype: torch.dtype = torch.float32):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention: feature width {dim} is not divisible by {heads} heads")
        self.dim, self.heads = int(dim), int(heads)
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False, dtype=dtype)
        self.out = torch.nn.Linear(dim, dim, dtype=dtype)
        # τ = 0.01 + softplus(p): p = log(exp(τ0 − 0.01) − 1)
        self.tau_parameter = torch.nn.Parameter(torch.tensor(math.log(math.expm1(tau - 0.01)), dtype=dtype))

    @property
    def tau(self) -> torch.Tensor:
        """The temperature τ (scalar tensor), always > 0.01."""
        return 0.01 + torch.nn.functional.softplus(self.tau_parameter)

    def forward(self, x: torch.Tensor, neighbour: torch.Tensor, cutoff: torch.Tensor,
                layout: PairLayout | None = None) -> torch.Tensor:
        """x (N, d); neighbour (N, M) atom indices; cutoff (N, M) f_c(r_ij), 0 on padding;
        layout: dense pair tables (:meth:`PairLayout.build`) or None for the per-edge path.
        Returns the updated features (N, d)."""
        n_atoms, width = neighbour.shape
        H, dh = self.heads, self.dim // self.heads
        q, k, v = self.qkv(x).view(n_atoms, 3, H, dh).unbind(1)
        q = torch.nn.functional.normalize(q, dim=-1, eps=1e-12)
        k = torch.nn.functional.normalize(k, dim=-1, eps=1e-12)
        inv_tau = 1.0 / self.tau
        flat_neighbour = neighbour.reshape(-1)
        if layout is not None:
            B, n = layout.n_systems, layout.n_max
            q_pad = _pad_atoms(q, layout).view(B, n, H, dh).transpose(1, 2)   # (B, H, n, dh)
            k_pad = _pad_atoms(k, layout).view(B, n, H, dh).transpose(1, 2)
            cosine = (q_pad @ k_pad.transpose(2, 3)).permute(0, 2, 3, 1).reshape(B * n * n, H)
            c_edge = cosine.index_select(0, layout.pair_slot.reshape(-1)).view(n_atoms, width, H)
        else:
            c_edge = (q[:, None] * k.index_select(0, flat_neighbour).view(n_atoms, width, H, dh)).sum(-1)
        s_self = (q * k).sum(-1) * inv_tau                                  # (N, H)
        s_edge = c_edge * (cutoff * inv_tau)[..., None]                      # (N, M, H)
        with torch.no_grad():  # per-atom maximum of the log-weights; the softmax does not depend on it
            shift = torch.maximum(s_self, (s_edge + torch.log(cutoff)[..., None]).amax(1))
        w_self = torch.exp(s_self - shift)
        w_edge = cutoff[..., None] * torch.exp(s_edge - shift[:, None, :])   # (N, M, H)
        norm = w_self + w_edge.sum(1)
        if layout is not None:
            weights = torch.zeros(B * n * n, H, dtype=x.dtype, device=x.device)
            weights = weights.index_add(0, layout.pair_slot.reshape(-1), w_edge.reshape(-1, H))
            weights = weights.view(B, n, n, H).permute(0, 3, 1, 2)              # (B, H, n, n)
            v_pad = _pad_atoms(v, layout).view(B, n, H, dh).transpose(1, 2)
            h = (weights @ v_pad).transpose(1, 2).reshape(B * n, H, dh).index_select(0, layout.atom_slot)
        else:
            v_edge = v.index_select(0, flat_neighbour).view(n_atoms, width, H, dh)
            h = (w_edge[..., None] * v_edge).sum(1)
        h = (h + w_self[..., None] * v) / norm[..., None]
        return x + self.out(h.reshape(n_atoms, self.dim))


def _pad_atoms(values: torch.Tensor, layout: PairLayout) -> torch.Tensor:
    """(N, ...) per-atom values → (B·n_max, ...) with zeros in empty rows."""
    out = torch.zeros((layout.n_systems * layout.n_max,) + tuple(values.shape[1:]),
                      dtype=values.dtype, device=values.device)
    return out.index_add(0, layout.atom_slot, values)
