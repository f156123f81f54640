"""Real spherical harmonics and their products: Y_lm as polynomials (the densities of Φ⁽²⁾) and
the real Gaunt coefficients ∫ Y Y Y dΩ that couple three of them (the bispectrum Φ⁽³⁾ of
:mod:`.descriptor`). Shapes: E = unit vectors, n_lm = (l_max+1)² columns l² + l + m."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.polynomial import legendre, polynomial


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
        # columns of the xy part [Im_L … Im_1, 1, Re_1 … Re_L] that degree l takes (m = −l..l),
        # gathered by one index: slicing per l costs a zero-filled copy per slice in double backward
        xy_columns = [self.l_max + m for l in range(self.l_max + 1) for m in range(-l, l + 1)]
        self.register_buffer("xy_columns", torch.tensor(xy_columns), persistent=False)

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
        return z_part * xy.index_select(1, self.xy_columns)


def bispectrum_triples(l_max: int) -> list[tuple[int, int, int]]:
    """(l1, l2, l3) with 1 ≤ l1 ≤ l2 ≤ l3 ≤ l_max, l3 ≤ l1 + l2 and l1 + l2 + l3 even (the
    non-vanishing, parity-even triples not reducible to Φ⁽²⁾); 9 for l_max 4, 23 for 6."""
    return [(a, b, c) for a in range(1, l_max + 1) for b in range(a, l_max + 1)
            for c in range(b, min(a + b, l_max) + 1) if (a + b + c) % 2 == 0]


def real_gaunt(l1: int, l2: int, l3: int) -> torch.Tensor:
    """G_{m1 m2 m3} = ∫ Y_l1m1 Y_l2m2 Y_l3m3 dΩ of :class:`RealSphericalHarmonics`, float64
    (2l1+1, 2l2+1, 2l3+1), by a product quadrature exact for the degree-(l1+l2+l3) integrand
    (Gauss-Legendre in cos θ, uniform in φ)."""
    degree = l1 + l2 + l3
    z, w_z = legendre.leggauss(degree // 2 + 1)
    n_phi = degree + 1
    phi = 2 * math.pi * np.arange(n_phi) / n_phi
    s = np.sqrt(1 - z ** 2)
    points = np.stack([np.outer(s, np.cos(phi)), np.outer(s, np.sin(phi)),
                       np.outer(z, np.ones(n_phi))], axis=-1).reshape(-1, 3)
    weights = torch.from_numpy(np.outer(w_z, np.full(n_phi, 2 * math.pi / n_phi)).reshape(-1))
    y = RealSphericalHarmonics(max(l1, l2, l3))(torch.from_numpy(points))
    blocks = [y[:, l * l:(l + 1) ** 2] for l in (l1, l2, l3)]
    return torch.einsum("q,qa,qb,qc->abc", weights, *blocks)


def gaunt_contraction(triples: list[tuple[int, int, int]]) -> tuple[torch.Tensor, ...]:
    """The triples' Gaunt coefficients as one sparse-by-blocks contraction of a density row A
    (n_lm,): with the column products p_q = A[left_q] A[right_q] over the blocks (l1, l2) of the
    triples' two lower degrees (Q products: each pair of degrees once, and for l1 = l2 only
    m1 ≤ m2, the coefficients of (m1, m2) and (m2, m1) added),
    Φ⁽³⁾_t = Σ_k (p G)_k A[third_k] segments[k, t], K = Σ_t (2l3+1) rows k.
    Returns (left (Q,) long, right (Q,) long, G (Q, K) float64, third (K,) long, segments (K, T))."""
    pairs = sorted({(l1, l2) for l1, l2, _ in triples})
    row, left, right = {}, [], []
    for l1, l2 in pairs:
        for m1 in range(2 * l1 + 1):
            for m2 in range(m1 if l1 == l2 else 0, 2 * l2 + 1):
                row[l1, l2, m1, m2] = len(left)
                if l1 == l2:
                    row[l1, l2, m2, m1] = len(left)
                left.append(l1 * l1 + m1)
                right.append(l2 * l2 + m2)
    k_total = sum(2 * l3 + 1 for _, _, l3 in triples)
    gaunt = torch.zeros(len(left), k_total, dtype=torch.float64)
    third = torch.zeros(k_total, dtype=torch.long)
    segments = torch.zeros(k_total, len(triples), dtype=torch.float64)
    k = 0
    for t, (l1, l2, l3) in enumerate(triples):
        g = real_gaunt(l1, l2, l3)                                   # (2l1+1, 2l2+1, 2l3+1)
        for m1 in range(2 * l1 + 1):
            for m2 in range(2 * l2 + 1):
                gaunt[row[l1, l2, m1, m2], k:k + 2 * l3 + 1] += g[m1, m2]
        third[k:k + 2 * l3 + 1] = torch.arange(l3 * l3, (l3 + 1) ** 2)
        segments[k:k + 2 * l3 + 1, t] = 1.0
        k += 2 * l3 + 1
    return torch.tensor(left), torch.tensor(right), gaunt, third, segments
