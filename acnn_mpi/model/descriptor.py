"""The ACNN descriptor (paper Eqs. 6-9): cutoff, Chebyshev radial basis, real spherical harmonics,
radial features Φ⁽¹⁾ and angular features Φ⁽²⁾, batched over all edges of a batch.

Shapes: E = edges (pairs i→j), N = atoms of the batch, S = number of elements of the model.
Lengths in Å; all features are dimensionless.

Chemistry: the neighbour's element enters both feature sets.

* Radial: Φ⁽¹⁾ is resolved by neighbour element, Φ⁽¹⁾_{i,(z,n)} = Σ_{j: Z_j = z} g_n(r_ij), shape
  (N, S·n_r). The first layer of the radial embedding MLP is then a learnable per-element mixing of
  the radial channels (a linear map commutes with the sum over j).
* Angular: the mixing has to happen before the square, so the channels are mixed explicitly,
  g̃_c(r_ij) = Σ_n W[Z_j]_{n,c} g_n(r_ij) with W learnable (S, n_a, n_a), and
  Φ⁽²⁾_{i,c,l} = Σ_m |Σ_j g̃_c(r_ij) Y_lm(r̂_ij)|² = (2l+1)/4π Σ_jk g̃_c(r_ij) g̃_c(r_ik) P_l(cos θ_ijk)
  (Eq. 9 by the addition theorem, with the paper's (2l+1)/4π constant), O(neighbours) per atom.
  The sum over j is done first per neighbour element, then mixed by one matmul per atom.
* Channel pairs (``cross_channels``): with the densities A_{i,c,lm} = Σ_j g̃_c(r_ij) Y_lm(r̂_ij),
  Eq. 9 is the diagonal Φ⁽²⁾_{i,c,l} = Σ_m A_{i,c,lm}². ``cross_channels=True`` also keeps the
  products of different channels, Φ⁽²⁾_{i,(c,c'),l} = Σ_m A_{i,c,lm} A_{i,c',lm} for c ≤ c'
  (the SOAP power spectrum's radial resolution: the pair (r_ij, r_ik) of an angle is resolved,
  not only its mixed diagonal), n_a(n_a+1)/2 features per l instead of n_a; same per-edge work.
  Every path (autograd, fused, C++) computes the densities; :meth:`ACNNDescriptor.contract` forms
  Φ⁽²⁾ from them by differentiable torch operations.
* Bispectrum (``bispectrum_l_max`` = L > 0): the channel-diagonal triple products
  Φ⁽³⁾_{i,c,(l1,l2,l3)} = Σ_{m1 m2 m3} G^{l1 l2 l3}_{m1 m2 m3} A_{i,c,l1m1} A_{i,c,l2m2} A_{i,c,l3m3}
  for 1 ≤ l1 ≤ l2 ≤ l3 ≤ L, l3 ≤ l1 + l2, l1 + l2 + l3 even, with the real Gaunt coefficients
  G = ∫ Y_l1m1 Y_l2m2 Y_l3m3 dΩ (:func:`.harmonics.real_gaunt`; invariant because the integral of a product
  is unchanged when all three are rotated). Each term is a sum over neighbour triples (j, k, k'),
  i.e. 4-body (SNAP's bispectrum, MTP's contractions of three moments), where Φ⁽²⁾ is 3-body.
  l1 = 0 is left out (it is A_00 times a Φ⁽²⁾ feature); odd l1 + l2 + l3 vanish (parity).
  Appended after Φ⁽²⁾ in the angular block.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch

from . import kernels
from .harmonics import RealSphericalHarmonics, bispectrum_triples, gaunt_contraction


def cosine_cutoff(r: torch.Tensor, r_cut: float) -> torch.Tensor:
    """Eq. 6: f_c(r) = ½[1 + cos(π r / r_c)] for r ≤ r_c, else 0. r (E,) Å → (E,)."""
    fc = 0.5 * (torch.cos(r * (math.pi / r_cut)) + 1.0)
    return torch.where(r < r_cut, fc, torch.zeros_like(fc))


def chebyshev_radial_basis(r: torch.Tensor, r_cut: float, n_basis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8: g_n(r) = ½[T_n(2(r/r_c − 1)² − 1) + 1] f_c(r), n = 0..n_basis−1.

    With u = 1 − r/r_c = cos φ, T_n(2u² − 1) = T_2n(u) = cos(2nφ), so the whole basis is one
    vectorized cosine (smooth for 0 < r ≤ r_c; φ = arccos u is singular only at r = 0).
    r (E,) Å → (g (E, n_basis), f_c (E,)).
    """
    fc = cosine_cutoff(r, r_cut)
    u = (1.0 - r / r_cut).clamp(min=-1.0)
    phi = torch.arccos(u)
    orders = torch.arange(0, 2 * n_basis, 2, dtype=r.dtype, device=r.device)
    g = (torch.cos(phi[:, None] * orders) + 1.0) * (0.5 * fc)[:, None]
    return g, fc


@dataclass
class NeighbourTable:
    """The neighbours of every atom within one cutoff, padded into a dense (N, M) table.

    M is the largest neighbour count. Padding entries have the vector (1.5 r_c, 0, 0), beyond the
    cutoff, so every cutoff-weighted quantity vanishes there, and the atom itself as neighbour.

    Attributes:
        vectors: (N, M, 3) r_ij, Å, differentiable in the input edge vectors.
        neighbour: (N, M) int64 atom index j (periodic images share the index of their atom).
    """

    vectors: torch.Tensor
    neighbour: torch.Tensor


def neighbour_table(vectors: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor,
                    n_atoms: int, r_cut: float) -> NeighbourTable:
    """Pad edges sorted by ``centre`` into a :class:`NeighbourTable`.

    vectors (E, 3) Å; centre, neighbour (E,) atom indices; edges at or beyond ``r_cut`` must
    already be removed.
    """
    device = vectors.device
    counts = torch.bincount(centre, minlength=n_atoms)
    width = max(int(counts.max()) if centre.numel() else 0, 1)
    rank = torch.arange(centre.shape[0], device=device) - (torch.cumsum(counts, 0) - counts).index_select(0, centre)
    flat = centre * width + rank
    valid = torch.zeros(n_atoms * width, dtype=torch.bool, device=device)
    valid[flat] = True
    base = torch.zeros(n_atoms * width, 3, dtype=vectors.dtype, device=device)
    base[:, 0] = (~valid).to(vectors.dtype) * (1.5 * r_cut)
    padded = base.index_add(0, flat, vectors)
    table = torch.arange(n_atoms, device=device).repeat_interleave(width)
    table[flat] = neighbour
    return NeighbourTable(vectors=padded.view(n_atoms, width, 3), neighbour=table.view(n_atoms, width))


@dataclass
class DescriptorOutput:
    """Per-atom features and the radial-cutoff neighbour table (for attention).

    Attributes:
        radial: (N, S·n_r) Φ⁽¹⁾ resolved by neighbour element (column z·n_r + n).
        angular: (N, n_a·(l_max+1)) Φ⁽²⁾ (column c·(l_max+1) + l).
        neighbour: (N, M) neighbours within the radial cutoff (padded, see :class:`NeighbourTable`),
            None when the descriptor was not asked for the table.
        vectors: (N, M, 3) their vectors r_ij, Å (differentiable), or None as ``neighbour``.
        r_cut: the radial cutoff, Å.
    """

    radial: torch.Tensor
    angular: torch.Tensor
    neighbour: Optional[torch.Tensor]
    vectors: Optional[torch.Tensor]
    r_cut: float

    @property
    def cutoff(self) -> torch.Tensor:
        """(N, M) f_c(r_ij) with the radial cutoff, 0 on padding (computed on first use: only
        attention needs it)."""
        if not hasattr(self, "_cutoff"):
            self._cutoff = cosine_cutoff(torch.linalg.vector_norm(self.vectors, dim=2), self.r_cut)
        return self._cutoff


class ACNNDescriptor(torch.nn.Module):
    """Radial (Eq. 7) and angular (Eq. 9) features of every atom of a batch, element-resolved.

    All edge work runs on padded (N, M) neighbour tables (:func:`neighbour_table`), so sums over
    neighbours are batched matrix products, not scatters.

    Args:
        n_elements: S, the number of elements the model knows.
        r_cut_radial / r_cut_angular: cutoffs r_c^r, r_c^a (Å).
        n_radial / n_angular: basis sizes n_r, n_a.
        l_max: highest angular order.
        cross_channels: products of all channel pairs c ≤ c' in Φ⁽²⁾ (module docstring), not
            only the diagonal of Eq. 9.
        bispectrum_l_max: L of the 4-body features Φ⁽³⁾ (module docstring), ≤ l_max (checked by
            ACNNHyperparameters and the config); 0: none.
    """

    def __init__(self, n_elements: int, r_cut_radial: float, r_cut_angular: float, n_radial: int,
                 n_angular: int, l_max: int, dtype: torch.dtype = torch.float32,
                 cross_channels: bool = False, bispectrum_l_max: int = 0):
        super().__init__()
        self.n_elements = int(n_elements)
        self.r_cut_radial = float(r_cut_radial)
        self.r_cut_angular = float(r_cut_angular)
        self.n_radial = int(n_radial)
        self.n_angular = int(n_angular)
        self.l_max = int(l_max)
        self.cross_channels = bool(cross_channels)
        pairs = torch.triu_indices(n_angular, n_angular) if cross_channels else torch.arange(n_angular).repeat(2, 1)
        self.register_buffer("channel_pairs", pairs, persistent=False)  # (2, P): channels c, c' of pair p
        self.harmonics = RealSphericalHarmonics(l_max)
        self.triples = bispectrum_triples(bispectrum_l_max)
        if self.triples:
            names = ("gaunt_left", "gaunt_right", "gaunt", "gaunt_third", "gaunt_sum")
            for name, value in zip(names, gaunt_contraction(self.triples)):
                self.register_buffer(name, value.to(dtype) if value.is_floating_point() else value,
                                     persistent=False)
        # per-neighbour-element mixing of the angular radial channels: column block z of
        # (n_a, S·n_a) is W[z], applied to the neighbours of element z
        mixing = torch.eye(n_angular, dtype=dtype).repeat(1, n_elements)
        mixing = mixing + torch.randn(n_angular, n_elements * n_angular, dtype=dtype) / math.sqrt(n_angular)
        self.angular_mixing = torch.nn.Parameter(mixing)

    @property
    def n_radial_features(self) -> int:
        return self.n_elements * self.n_radial

    @property
    def n_angular_features(self) -> int:
        return self.channel_pairs.shape[1] * (self.l_max + 1) + self.n_angular * len(self.triples)

    def contract(self, density: torch.Tensor) -> torch.Tensor:
        """Φ⁽²⁾ (N, P·(l_max+1)), column p·(l_max+1) + l, from the densities A (N, n_a, n_lm):
        Σ_m A_{c,lm} A_{c',lm} over the P channel pairs (c, c') (the diagonal: Eq. 9); then, with
        ``bispectrum_l_max``, Φ⁽³⁾ (N, n_a·T), column P·(l_max+1) + c·T + t for triple t."""
        if self.cross_channels:
            first, second = self.channel_pairs
            products = density.index_select(1, first) * density.index_select(1, second)
        else:
            products = density * density
        power = (products @ self.harmonics.sum_over_m.to(density.dtype)).reshape(density.shape[0], -1)
        if not self.triples:
            return power
        return torch.cat([power, self.bispectrum(density).reshape(density.shape[0], -1)], dim=1)

    def bispectrum(self, density: torch.Tensor) -> torch.Tensor:
        """Φ⁽³⁾ (N, n_a, T) from the densities A (N, n_a, n_lm) (module docstring), all triples
        at once (:func:`.harmonics.gaunt_contraction`): the column products of the lower two degrees, one
        matmul with the Gaunt coefficients, the product with the third degree's columns and a
        sum over its m per triple."""
        n_atoms, n_a, n_lm = density.shape
        a = density.reshape(n_atoms * n_a, n_lm)
        products = a.index_select(1, self.gaunt_left) * a.index_select(1, self.gaunt_right)
        coupled = products @ self.gaunt.to(density.dtype)                    # (N·n_a, K)
        third = a.index_select(1, self.gaunt_third)
        return ((coupled * third) @ self.gaunt_sum.to(density.dtype)).view(n_atoms, n_a, -1)

    def _table(self, vectors, centre, neighbour, r_plain, r_cut, n_atoms) -> NeighbourTable:
        keep = torch.nonzero(r_plain < r_cut).squeeze(1)
        if keep.shape[0] != centre.shape[0]:
            vectors, centre, neighbour = vectors.index_select(0, keep), centre[keep], neighbour[keep]
        return neighbour_table(vectors, centre, neighbour, n_atoms, r_cut)

    def forward(self, vectors: torch.Tensor, index: torch.Tensor, species: torch.Tensor,
                neighbour_table: bool = True) -> DescriptorOutput:
        """vectors (E, 3) r_ij in Å; index (2, E) [centre i, neighbour j]; species (N,) element
        index 0..S−1 of each atom. Edges beyond the cutoffs are ignored; any edge order works
        (edges sorted by centre, as :func:`acnn_mpi.neighbors.neighbor_list` gives them, skip a sort).

        ``neighbour_table=False`` (no attention): the output carries no neighbour table, and atoms
        are processed in buckets of similar neighbour counts, each padded to its own width
        (:meth:`_buckets`), so that a few dense structures do not pad the whole batch; or, with
        the C++ kernels switched on (``model.compile: cpp``, float32 on CPU, first derivatives
        only), by :func:`acnn_mpi.model.kernels.features` straight from the edges.
        """
        n_atoms = species.shape[0]
        centre, neighbour = index[0], index[1]
        if centre.numel() > 1 and not bool((centre[1:] >= centre[:-1]).all()):
            order = torch.argsort(centre, stable=True)
            vectors, centre, neighbour = vectors.index_select(0, order), centre[order], neighbour[order]
        fused, parameter_gradients = _fused_state()
        if not neighbour_table and fused and kernels.available_for(vectors):
            # C++ per-edge kernels: no tables, no buckets (kernels.py)
            radial, angular = kernels.features(self, vectors, centre, neighbour, species, parameter_gradients)
            return DescriptorOutput(radial=radial, angular=angular, neighbour=None, vectors=None,
                                    r_cut=self.r_cut_radial)
        r_plain = torch.linalg.vector_norm(vectors.detach(), dim=1)
        edges = (vectors, centre, neighbour, r_plain)
        if neighbour_table:
            radial, angular, table = self._bucket_features(edges, species, None)
            return DescriptorOutput(radial=radial, angular=angular, neighbour=table.neighbour,
                                    vectors=table.vectors, r_cut=self.r_cut_radial)
        counts = torch.bincount(centre[r_plain < self.r_cut_radial], minlength=n_atoms)
        buckets = self._buckets(counts)
        if len(buckets) == 1:
            radial, angular, _ = self._bucket_features(edges, species, None)
        else:
            parts = [self._bucket_features(edges, species, atoms) for atoms in buckets]
            inverse = torch.empty(n_atoms, dtype=torch.long, device=species.device)
            inverse[torch.cat(buckets)] = torch.arange(n_atoms, device=species.device)
            radial = torch.cat([p[0] for p in parts]).index_select(0, inverse)
            angular = torch.cat([p[1] for p in parts]).index_select(0, inverse)
        return DescriptorOutput(radial=radial, angular=angular, neighbour=None, vectors=None,
                                r_cut=self.r_cut_radial)

    # one more bucket costs about as much as this many padded table entries (a fused call's
    # fixed work: ~100 small operations)
    BUCKET_COST_ENTRIES = 4096

    def _buckets(self, counts: torch.Tensor, max_buckets: int = 4) -> list[torch.Tensor]:
        """Atoms grouped by radial neighbour count (ascending atom indices within a group): the
        number of equal-size groups of the sorted counts (1..max_buckets) that minimizes the
        padded entries Σ n_b · max_b plus :attr:`BUCKET_COST_ENTRIES` per extra group."""
        n_atoms = counts.shape[0]
        if n_atoms < 2:
            return [torch.arange(n_atoms, device=counts.device)]
        sorted_counts, order = torch.sort(counts)
        best, best_k = None, 1
        for k in range(1, max_buckets + 1):
            bounds = [n_atoms * b // k for b in range(k + 1)]
            cost = sum((hi - lo) * int(sorted_counts[hi - 1]) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo)
            cost += (k - 1) * self.BUCKET_COST_ENTRIES
            if best is None or cost < best:
                best, best_k = cost, k
        bounds = [n_atoms * b // best_k for b in range(best_k + 1)]
        return [torch.sort(order[lo:hi])[0] for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]

    def _bucket_features(self, edges, species: torch.Tensor, atoms: torch.Tensor | None):
        """(Φ⁽¹⁾, Φ⁽²⁾, radial table) of the atoms ``atoms`` (ascending global indices; None: all)
        from the centre-sorted ``edges`` = (vectors, centre, neighbour, |vectors|)."""
        vectors, centre, neighbour, r_plain = edges
        S, n_a = self.n_elements, self.n_angular
        if atoms is None:
            n_atoms = species.shape[0]
        else:
            n_atoms = atoms.shape[0]
            local = torch.full((species.shape[0],), -1, dtype=torch.long, device=species.device)
            local[atoms] = torch.arange(n_atoms, device=species.device)
            mine = torch.nonzero(local.index_select(0, centre) >= 0).squeeze(1)
            vectors, neighbour, r_plain = vectors.index_select(0, mine), neighbour[mine], r_plain[mine]
            centre = local.index_select(0, centre[mine])
        table = self._table(vectors, centre, neighbour, r_plain, self.r_cut_radial, n_atoms)
        if self.r_cut_angular != self.r_cut_radial:
            table_a = self._table(vectors, centre, neighbour, r_plain, self.r_cut_angular, n_atoms)
        else:
            table_a = table
        width = table.neighbour.shape[1]
        z = species.index_select(0, table.neighbour.view(-1))
        z_a = z if table_a is table else species.index_select(0, table_a.neighbour.view(-1))
        element = torch.nn.functional.one_hot(z, S).to(vectors.dtype).view(n_atoms, width, S)
        # the neighbour's element picks its mixing block: g̃ = g W[Z_j], W[z] = columns z·n_a…
        pick = z_a[:, None] * n_a + torch.arange(n_a, device=z_a.device)
        fused, parameter_gradients = _fused_state()
        if fused:
            mixing = self.angular_mixing if parameter_gradients else self.angular_mixing.detach()
            radial, density = _FusedFeatures.apply(table.vectors, table_a.vectors, mixing, element, pick, self)
        else:
            radial, density = self._features(table.vectors, table_a.vectors, element, pick)
        return radial, self.contract(density), table

    def _features(self, vectors: torch.Tensor, vectors_a: torch.Tensor, element: torch.Tensor,
                  pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Φ⁽¹⁾ (N, S·n_r) and the angular densities A (N, n_a, n_lm) from the radial and angular
        tables (N, M, 3) and (N, M_a, 3), by autograd-differentiable operations (any order)."""
        n_atoms, width, _ = vectors.shape
        width_a, n_a = vectors_a.shape[1], self.n_angular
        # radial features, Eq. 7, summed per neighbour element: (N, S, M) @ (N, M, n_r)
        r = torch.linalg.vector_norm(vectors, dim=2)
        g, _ = chebyshev_radial_basis(r.view(-1), self.r_cut_radial, self.n_radial)
        radial = torch.bmm(element.transpose(1, 2), g.view(n_atoms, width, -1)).view(n_atoms, -1)
        # angular features, Eq. 9 via the addition theorem: (N, n_a, M) @ (N, M, n_lm)
        r_a = torch.linalg.vector_norm(vectors_a, dim=2)
        g_a, _ = chebyshev_radial_basis(r_a.view(-1), self.r_cut_angular, n_a)
        mixed = torch.gather(g_a @ self.angular_mixing, 1, pick)              # (N·M, n_a)
        y = self.harmonics((vectors_a / r_a[..., None]).view(-1, 3))          # (N·M, n_lm)
        density = torch.bmm(mixed.view(n_atoms, width_a, n_a).transpose(1, 2),
                            y.view(n_atoms, width_a, -1))                     # (N, n_a, n_lm)
        return radial, density

    def _fused_constants(self, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """z_coeff and xy selection matrices of the harmonics in ``dtype``."""
        key = (dtype, device)
        if getattr(self, "_constants_key", None) != key:
            h = self.harmonics
            self._constants = (h.z_coeff.to(dtype=dtype, device=device),
                               xy_selection(self.l_max, dtype, device))
            self._constants_key = key
        return self._constants


# ------------------------------------------------------------------------------------------------
# Fused path: the same features with a hand-written backward (first derivatives only)
# ------------------------------------------------------------------------------------------------
_FIRST_ONLY = threading.local()


@contextmanager
def first_derivatives_only(enabled: bool = True, parameter_gradients: bool = True):
    """Within this context :class:`ACNNDescriptor` uses its fused path: the same features, with a
    hand-written backward that needs about half the passes over the (N, M, basis) tables of
    autograd's. Its backward cannot itself be differentiated (no ``create_graph``): training on
    forces uses the default path. ``parameter_gradients=False``: the caller will not ask for
    gradients of the model's parameters (forces and stress only), so the backward skips them.
    :func:`acnn_mpi.model.forces.evaluate` enters it whenever ``create_graph`` is False."""
    previous = getattr(_FIRST_ONLY, "state", (False, True))
    _FIRST_ONLY.state = (bool(enabled) and _KERNELS["enabled"], bool(parameter_gradients))
    try:
        yield
    finally:
        _FIRST_ONLY.state = previous


def _fused_state() -> tuple[bool, bool]:
    """(fused path on, parameter gradients wanted)."""
    return getattr(_FIRST_ONLY, "state", (False, True))


def _basis_forward(r: torch.Tensor, r_cut: float, n_basis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8 like :func:`chebyshev_radial_basis`, with its derivative, computed together because
    the fused path always needs both: r (E,) → g (E, n), dg/dr (E, n), with
    dg_n/dr = h'(1 + cos 2nφ) − h·2n·sin(2nφ)·dφ/dr (h = f_c/2). Reusing the angle 2nφ and writing
    in place keeps it at ~8 passes over (E, n); the backward is then one contraction with dg/dr
    instead of ~8 more passes (sin, products, two row sums)."""
    inside = r < r_cut
    arg = r * (math.pi / r_cut)
    zero = torch.zeros_like(r)
    h = torch.where(inside, 0.25 * (torch.cos(arg) + 1.0), zero)
    dh = torch.where(inside, (-0.25 * math.pi / r_cut) * torch.sin(arg), zero)
    u = (1.0 - r / r_cut).clamp(min=-1.0)
    # dφ/dr = 1 / (r_c √(1 − u²)); only used where h > 0 (0 < r < r_c, so |u| < 1)
    dphi = torch.where(inside, 1.0 / (r_cut * torch.sqrt((1.0 - u * u).clamp(min=1e-30))), zero)
    orders = torch.arange(0, 2 * n_basis, 2, dtype=r.dtype, device=r.device)
    angle = torch.arccos(u)[:, None] * orders
    cos_p1 = torch.cos(angle).add_(1.0)
    grad = angle.sin_().mul_(orders).mul_((-h * dphi)[:, None]).addcmul_(cos_p1, dh[:, None])
    return cos_p1.mul_(h[:, None]), grad


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_k a[e, k] b[e, k] (E,) of (E, K) tensors (a matrix-vector product: ~2× faster than a row
    sum on CPU)."""
    return (a * b) @ torch.ones(a.shape[1], dtype=a.dtype, device=a.device)


def xy_selection(l_max: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """(2L+1, (L+1)²) 0/1 matrix taking [Im_L … Im_1, Re_0 … Re_L] of (x + iy)^m to the xy
    factor of every Y_lm column (degree l takes the middle 2l+1 entries)."""
    select = torch.zeros(2 * l_max + 1, (l_max + 1) ** 2, dtype=dtype, device=device)
    col = 0
    for l in range(l_max + 1):
        for k in range(l_max - l, l_max + l + 1):
            select[k, col] = 1.0
            col += 1
    return select


def _matmul(a: torch.Tensor, b: torch.Tensor, pointwise: bool) -> torch.Tensor:
    """a (..., K) @ b (K, J). ``pointwise``: as a broadcast sum, which torch.compile fuses with the
    operations around it (for small K and J), where eager mode would materialize (..., K, J)."""
    return (a.unsqueeze(-1) * b).sum(-2) if pointwise else a @ b


def _mix(values: torch.Tensor, mixing: torch.Tensor, pick: torch.Tensor, transpose: bool,
         pointwise: bool) -> torch.Tensor:
    """values (E, n_a) times the neighbour's element block W[Z_j] (or its transpose) of mixing
    (n_a, S·n_a): one matmul to all S blocks and a gather, or (``pointwise``) a per-edge gather of
    W[Z_j] that torch.compile fuses."""
    n_a = values.shape[1]
    S = mixing.shape[1] // n_a
    blocks = mixing.view(n_a, S, n_a)                                          # [n, z, c]
    if pointwise:
        per_element = blocks.permute(1, 0, 2)                                  # [z, n, c]
        w = per_element.index_select(0, torch.div(pick[:, 0], n_a, rounding_mode="floor"))
        return (values[:, None, :] * w).sum(2) if transpose else (values[:, :, None] * w).sum(1)
    if transpose:
        return torch.gather(values @ blocks.permute(2, 1, 0).reshape(n_a, S * n_a), 1, pick)
    return torch.gather(values @ mixing, 1, pick)


def _harmonics_forward(unit, z_coeff, select, l_max: int, pointwise: bool = False):
    """Y (E, n_lm) = (z powers @ z_coeff) · (xy @ select) of unit (E, 3), and what the backward needs."""
    x, y, z = unit.unbind(1)
    powers = [torch.ones_like(z)]
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(l_max):
        powers.append(powers[-1] * z)
        re.append(re[-1] * x - im[-1] * y)
        im.append(re[-2] * y + im[-1] * x)
    powers, re, im = torch.stack(powers, 1), torch.stack(re, 1), torch.stack(im, 1)
    z_part = _matmul(powers, z_coeff, pointwise)
    xy = _matmul(torch.cat([im[:, 1:].flip(1), re], dim=1), select, pointwise)
    return z_part * xy, powers, re, im, z_part, xy


def _harmonics_backward(grad_y, z_coeff, select, l_max: int, powers, re, im, z_part, xy,
                        pointwise: bool = False):
    """dL/d unit (E, 3) from dL/dY (E, n_lm), the unit vector taken as free. With
    P + iQ = (x + iy)^m: ∂P_m/∂x = m P_{m−1}, ∂Q_m/∂x = m Q_{m−1}, ∂P_m/∂y = −m Q_{m−1},
    ∂Q_m/∂y = m P_{m−1}."""
    L = l_max
    d_zpart = _matmul(grad_y * xy, z_coeff.T, pointwise)                      # (E, L+1)
    d_xy = _matmul(grad_y * z_part, select.T, pointwise)                       # (E, 2L+1)
    m = torch.arange(1, L + 1, dtype=grad_y.dtype, device=grad_y.device)
    dz = (d_zpart[:, 1:] * powers[:, :L] * m).sum(1)
    d_re, d_im = d_xy[:, L + 1:], d_xy[:, :L].flip(1)                           # m = 1..L
    re_prev, im_prev = re[:, :L], im[:, :L]
    dx = ((d_re * re_prev + d_im * im_prev) * m).sum(1)
    dy = ((d_im * re_prev - d_re * im_prev) * m).sum(1)
    return torch.stack([dx, dy, dz], dim=1)


def _fused_forward(vectors, vectors_a, mixing, element, pick, z_coeff, select,
                   r_cut: float, r_cut_a: float, n_radial: int, n_angular: int, l_max: int,
                   pointwise: bool = False):
    """Φ⁽¹⁾ (N, S, n_r), the angular densities A (N, n_a, n_lm) and the tensors the backward needs,
    from the radial and angular tables (N, M, 3), (N, M_a, 3); the same operations as the default
    path."""
    n_atoms, width, _ = vectors.shape
    width_a = vectors_a.shape[1]
    r = torch.linalg.vector_norm(vectors, dim=2).view(-1)
    g, dg = _basis_forward(r, r_cut, n_radial)
    radial = torch.bmm(element.transpose(1, 2), g.view(n_atoms, width, -1))
    r_a = torch.linalg.vector_norm(vectors_a, dim=2).view(-1)
    g_a, dg_a = _basis_forward(r_a, r_cut_a, n_angular)
    mixed = _mix(g_a, mixing, pick, False, pointwise).view(n_atoms, width_a, n_angular)
    unit = vectors_a.view(-1, 3) / r_a[:, None]
    y, powers, re, im, z_part, xy = _harmonics_forward(unit, z_coeff, select, l_max, pointwise)
    y = y.view(n_atoms, width_a, -1)
    density = torch.bmm(mixed.transpose(1, 2), y)                              # (N, n_a, n_lm)
    saved = (r, dg.view(n_atoms, width, -1), r_a, dg_a, g_a, mixed, unit, y, powers, re, im, z_part, xy)
    return radial, density, saved


def _fused_backward(grad_radial, grad_density, vectors, mixing, element, pick, z_coeff, select,
                    saved, r_cut: float, r_cut_a: float, l_max: int, need_mixing: bool,
                    pointwise: bool = False):
    """dL/d(radial table) (N, M, 3), dL/d(angular table) (N, M_a, 3) and dL/d mixing (or None)
    from dL/dΦ⁽¹⁾ (N, S, n_r) and dL/dA (N, n_a, n_lm)."""
    r, dg, r_a, dg_a, g_a, mixed, unit, y, powers, re, im, z_part, xy = saved
    n_atoms, width, S = element.shape
    width_a, n_a = mixed.shape[1], mixed.shape[2]
    # dL/dr_ij = Σ_n dg_n(r_ij) dL/dΦ⁽¹⁾_{i,Z_j,n}: (N, M, n_r) @ (N, n_r, S), then the Z_j column
    grad_r = (torch.bmm(dg, grad_radial.transpose(1, 2)) * element).sum(2).view(-1)
    grad_v = ((grad_r / r)[:, None] * vectors.view(-1, 3)).view(n_atoms, width, 3)
    grad_mixed = torch.bmm(y, grad_density.transpose(1, 2)).view(-1, n_a)      # (N·M_a, n_a)
    grad_y = torch.bmm(mixed, grad_density).view(n_atoms * width_a, -1)
    # back through g̃ = g W[Z_j]: dL/dg = dL/dg̃ W[Z_j]ᵀ
    grad_g_a = _mix(grad_mixed, mixing, pick, True, pointwise)
    grad_r_a = _row_dot(grad_g_a, dg_a)
    grad_unit = _harmonics_backward(grad_y, z_coeff, select, l_max, powers, re, im, z_part, xy, pointwise)
    # v = r·unit: dL/dv = (dL/du − (dL/du·u) u)/r + dL/dr u
    radial_part = grad_r_a - (grad_unit * unit).sum(1) / r_a
    grad_v_a = (grad_unit / r_a[:, None] + radial_part[:, None] * unit).view(n_atoms, width_a, 3)
    grad_mixing = None
    if need_mixing:
        full = torch.zeros(grad_mixed.shape[0], S * n_a, dtype=r.dtype, device=r.device)
        grad_mixing = g_a.T @ full.scatter_(1, pick, grad_mixed)
    return grad_v, grad_v_a, grad_mixing


_KERNELS = {"forward": _fused_forward, "backward": _fused_backward, "pointwise": False, "enabled": True}


def use_fused_path(enabled: bool = True) -> None:
    """Process-wide switch of the fused path (on by default; off: autograd everywhere, for
    benchmarks and checks)."""
    _KERNELS["enabled"] = bool(enabled)


def compile_fused_kernels(enabled: bool = True) -> None:
    """Run the fused path's forward and backward through ``torch.compile`` (inductor; on CPU it
    needs a C++ compiler), which fuses their elementwise chains into fewer passes over the
    tables. Compiling happens at the first model call, once per process (dynamic shapes: new
    batch sizes and neighbour counts do not recompile). Where it fails (no compiler, an
    unsupported platform) the eager kernels take over with one warning (:func:`_run_kernel`).
    ``enabled=False`` goes back to the eager kernels."""
    if enabled:
        _KERNELS["forward"] = torch.compile(_fused_forward, dynamic=True)
        _KERNELS["backward"] = torch.compile(_fused_backward, dynamic=True)
        _KERNELS["pointwise"] = True
    else:
        _KERNELS.update(forward=_fused_forward, backward=_fused_backward, pointwise=False)


def configure_kernels(mode: str) -> str:
    """Apply the ``model.compile`` setting ('off', 'cpp' or 'inductor'): the C++ per-edge kernels
    (:mod:`acnn_mpi.model.kernels`), torch.compile of the fused kernels, or neither. Returns the
    mode in effect: 'off' (with one warning) when a compiled mode was asked for and no C++
    compiler is found or the build fails."""
    if mode not in ("off", "cpp", "inductor"):
        raise ValueError(f"model.compile must be 'off', 'cpp' or 'inductor', got {mode!r}")
    kernels.use_cpp_kernels(False)
    compile_fused_kernels(False)
    if mode == "off":
        return "off"
    import shutil

    compiler = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if compiler is None:
        warnings.warn(f"model.compile: {mode}: no C++ compiler (g++, c++, clang++ or $CXX) found; the model "
                      "runs uncompiled (set model.compile: off to silence this)")
        return "off"
    if mode == "cpp":
        return "cpp" if kernels.use_cpp_kernels(True) else "off"
    compile_fused_kernels(True)
    return "inductor"


def _run_kernel(name: str, *args):
    """The fused kernel ``name`` ('forward' or 'backward'); a compiled kernel that fails to build
    is replaced by the eager kernels for the rest of the process, with one warning."""
    kernel = _KERNELS[name]
    if kernel is _fused_forward or kernel is _fused_backward:
        return kernel(*args)
    try:
        return kernel(*args)
    except Exception as exc:  # noqa: BLE001 - inductor raises many kinds when it cannot build
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        warnings.warn(f"model.compile: torch.compile failed ({type(exc).__name__}: {reason}); "
                      "the model runs uncompiled")
        compile_fused_kernels(False)
        args = args[:-1] + (False,)  # the eager kernels' own (matmul) formulation
        return _KERNELS[name](*args)


class _FusedFeatures(torch.autograd.Function):
    """(radial table, angular table, mixing) → (Φ⁽¹⁾ (N, S·n_r), densities A (N, n_a, n_lm)) with a
    hand-written backward (first derivatives only: the backward is not itself differentiable)."""

    @staticmethod
    def forward(ctx, vectors, vectors_a, mixing, element, pick, descriptor):
        d = descriptor
        constants = d._fused_constants(vectors.dtype, vectors.device)
        radial, density, saved = _run_kernel(
            "forward", vectors, vectors_a, mixing, element, pick, *constants, d.r_cut_radial, d.r_cut_angular,
            d.n_radial, d.n_angular, d.l_max, _KERNELS["pointwise"])
        ctx.descriptor, ctx.constants, ctx.n_saved = d, constants, len(saved)
        ctx.save_for_backward(vectors, mixing, element, pick, *saved)
        n_atoms = vectors.shape[0]
        return radial.reshape(n_atoms, -1), density

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_radial, grad_density):
        d = ctx.descriptor
        vectors, mixing, element, pick, *saved = ctx.saved_tensors
        n_atoms, _, S = element.shape
        if grad_radial is None:
            grad_radial = torch.zeros(n_atoms, S * d.n_radial, dtype=vectors.dtype, device=vectors.device)
        if grad_density is None:
            grad_density = torch.zeros(n_atoms, d.n_angular, d.harmonics.n_lm, dtype=vectors.dtype,
                                       device=vectors.device)
        grad_v, grad_v_a, grad_mixing = _run_kernel(
            "backward", grad_radial.reshape(n_atoms, S, -1).contiguous(), grad_density.contiguous(),
            vectors, mixing, element, pick,
            *ctx.constants, tuple(saved), d.r_cut_radial, d.r_cut_angular, d.l_max, ctx.needs_input_grad[2],
            _KERNELS["pointwise"])
        return grad_v, grad_v_a, grad_mixing, None, None, None
