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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import legendre, polynomial


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


class RealSphericalHarmonics(torch.nn.Module):
    """Real spherical harmonics Y_lm (l ≤ l_max) of unit vectors, as polynomials in x, y, z.

    Normalized so that Σ_m Y_lm(a) Y_lm(b) = (2l+1)/4π P_l(a·b) (addition theorem). Column
    l² + l + m holds m = −l..l; m > 0 are the cosine (Re (x+iy)^m) and m < 0 the sine (Im) parts:
    Y_lm = N_l|m| · d^|m|P_l/dz^|m|(z) · {Re, Im}(x + iy)^|m|, a polynomial of degree l.
    """

    def __init__(self, l_max: int):
        super().__init__()
        if l_max < 0:
            raise ValueError(f"l_max must be >= 0, got {l_max}")
        self.l_max = int(l_max)
        pairs = [(l, m) for l in range(l_max + 1) for m in range(l + 1)]
        z_coeff = np.zeros((l_max + 1, len(pairs)))
        for p, (l, m) in enumerate(pairs):
            poly = polynomial.polyder(legendre.leg2poly([0] * l + [1]), m) if l >= m else np.zeros(1)
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m > 0:
                norm *= math.sqrt(2.0)
            z_coeff[: len(poly), p] = norm * poly
        pair_index = [pairs.index((l, abs(m))) for l in range(l_max + 1) for m in range(-l, l + 1)]
        # Y = (z powers @ z_coeff) * xy part; columns of z_coeff in (l, m) order
        self.register_buffer("z_coeff", torch.tensor(z_coeff[:, pair_index]), persistent=False)
        degree = torch.tensor([l for l in range(l_max + 1) for _ in range(2 * l + 1)])
        # (n_lm, l_max+1) 0/1 matrix summing the m components of each l
        self.register_buffer("sum_over_m", torch.nn.functional.one_hot(degree).to(torch.float64), persistent=False)

    @property
    def n_lm(self) -> int:
        return (self.l_max + 1) ** 2

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        """unit (E, 3) unit vectors → Y (E, (l_max+1)²)."""
        x, y, z = unit.unbind(1)
        powers = [torch.ones_like(z)]
        for _ in range(self.l_max):
            powers.append(powers[-1] * z)
        z_part = torch.stack(powers, dim=1) @ self.z_coeff.to(unit.dtype)
        # xy part ordered [Im_L … Im_1, 1, Re_1 … Re_L] with Re + i Im = (x + iy)^k; degree l
        # takes the middle 2l+1 columns (m = −l..l)
        re_parts, im_parts = [], []
        re, im = x, y
        for k in range(1, self.l_max + 1):
            re_parts.append(re)
            im_parts.append(im)
            if k < self.l_max:
                re, im = re * x - im * y, re * y + im * x
        xy = torch.stack(im_parts[::-1] + [torch.ones_like(x)] + re_parts, dim=1)
        L = self.l_max
        xy = torch.cat([xy[:, L - l: L + l + 1] for l in range(L + 1)], dim=1)
        return z_part * xy


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
        neighbour: (N, M) neighbours within the radial cutoff (padded, see :class:`NeighbourTable`).
        cutoff: (N, M) f_c(r_ij) with the radial cutoff, 0 on padding.
    """

    radial: torch.Tensor
    angular: torch.Tensor
    neighbour: torch.Tensor
    cutoff: torch.Tensor


class ACNNDescriptor(torch.nn.Module):
    """Radial (Eq. 7) and angular (Eq. 9) features of every atom of a batch, element-resolved.

    All edge work runs on padded (N, M) neighbour tables (:func:`neighbour_table`), so sums over
    neighbours are batched matrix products, not scatters.

    Args:
        n_elements: S, the number of elements the model knows.
        r_cut_radial / r_cut_angular: cutoffs r_c^r, r_c^a (Å).
        n_radial / n_angular: basis sizes n_r, n_a.
        l_max: highest angular order.
    """

    def __init__(self, n_elements: int, r_cut_radial: float, r_cut_angular: float, n_radial: int,
                 n_angular: int, l_max: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_elements = int(n_elements)
        self.r_cut_radial = float(r_cut_radial)
        self.r_cut_angular = float(r_cut_angular)
        self.n_radial = int(n_radial)
        self.n_angular = int(n_angular)
        self.l_max = int(l_max)
        self.harmonics = RealSphericalHarmonics(l_max)
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
        return self.n_angular * (self.l_max + 1)

    def _table(self, vectors, centre, neighbour, r_plain, r_cut, n_atoms) -> NeighbourTable:
        keep = torch.nonzero(r_plain < r_cut).squeeze(1)
        if keep.shape[0] != centre.shape[0]:
            vectors, centre, neighbour = vectors.index_select(0, keep), centre[keep], neighbour[keep]
        return neighbour_table(vectors, centre, neighbour, n_atoms, r_cut)

    def forward(self, vectors: torch.Tensor, index: torch.Tensor, species: torch.Tensor) -> DescriptorOutput:
        """vectors (E, 3) r_ij in Å; index (2, E) [centre i, neighbour j]; species (N,) element
        index 0..S−1 of each atom. Edges beyond the cutoffs are ignored; any edge order works
        (edges sorted by centre, as :func:`acnn_mpi.neighbors.neighbor_list` gives them, skip a sort).
        """
        n_atoms = species.shape[0]
        S, n_a = self.n_elements, self.n_angular
        centre, neighbour = index[0], index[1]
        if centre.numel() > 1 and not bool((centre[1:] >= centre[:-1]).all()):
            order = torch.argsort(centre, stable=True)
            vectors, centre, neighbour = vectors.index_select(0, order), centre[order], neighbour[order]
        r_plain = torch.linalg.vector_norm(vectors.detach(), dim=1)

        # radial features, Eq. 7, summed per neighbour element: (N, S, M) @ (N, M, n_r)
        table = self._table(vectors, centre, neighbour, r_plain, self.r_cut_radial, n_atoms)
        width = table.neighbour.shape[1]
        r = torch.linalg.vector_norm(table.vectors, dim=2)
        g, fc = chebyshev_radial_basis(r.view(-1), self.r_cut_radial, self.n_radial)
        z = species.index_select(0, table.neighbour.view(-1))
        element = torch.nn.functional.one_hot(z, S).to(g.dtype).view(n_atoms, width, S)
        radial = torch.bmm(element.transpose(1, 2), g.view(n_atoms, width, -1)).view(n_atoms, -1)

        # angular features, Eq. 9 via the addition theorem: (N, n_a, M) @ (N, M, n_lm)
        if self.r_cut_angular != self.r_cut_radial:
            table_a = self._table(vectors, centre, neighbour, r_plain, self.r_cut_angular, n_atoms)
            r_a = torch.linalg.vector_norm(table_a.vectors, dim=2)
            z_a = species.index_select(0, table_a.neighbour.view(-1))
        else:
            table_a, r_a, z_a = table, r, z
        width_a = table_a.neighbour.shape[1]
        g_a, _ = chebyshev_radial_basis(r_a.view(-1), self.r_cut_angular, n_a)
        # mix the channels with the neighbour's element: g̃ = g W[Z_j], W[z] = columns z·n_a…
        pick = z_a[:, None] * n_a + torch.arange(n_a, device=z_a.device)
        mixed = torch.gather(g_a @ self.angular_mixing, 1, pick)              # (N·M, n_a)
        y = self.harmonics((table_a.vectors / r_a[..., None]).view(-1, 3))    # (N·M, n_lm)
        density = torch.bmm(mixed.view(n_atoms, width_a, n_a).transpose(1, 2),
                            y.view(n_atoms, width_a, -1))                     # (N, n_a, n_lm)
        angular = ((density * density) @ self.harmonics.sum_over_m).reshape(n_atoms, -1)
        return DescriptorOutput(radial=radial, angular=angular, neighbour=table.neighbour,
                                cutoff=fc.view(n_atoms, width))
