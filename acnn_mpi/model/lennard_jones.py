"""A shifted-force Lennard-Jones pair potential in the atomic-energy model interface.

The analytic reference model for optimizer and workflow tests (as in torch-sim): cheap, smooth
(energy and force go to zero at the cutoff), and with known minima (fcc lattice constant
a ≈ 1.5424 σ at zero pressure for a long cutoff).
"""

from __future__ import annotations

import torch

from ..neighbors import Edges
from ..state import Batch


class LennardJones(torch.nn.Module):
    """V(r) = 4ε[(σ/r)¹² − (σ/r)⁶], shifted so that V and V' vanish at ``cutoff``.

    Args:
        epsilon: well depth ε, eV.
        sigma: length σ, Å.
        cutoff: Å; default 2.5 σ.
    """

    def __init__(self, epsilon: float = 0.0104, sigma: float = 3.4, cutoff: float | None = None):
        super().__init__()
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)
        self.cutoff = float(cutoff if cutoff is not None else 2.5 * sigma)

    def _pair(self, r: torch.Tensor) -> torch.Tensor:
        sr6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (sr6 * sr6 - sr6)

    def _pair_derivative(self, r: torch.Tensor) -> torch.Tensor:
        sr6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (-12.0 * sr6 * sr6 + 6.0 * sr6) / r

    def atomic_energies(self, batch: Batch, edges: Edges) -> torch.Tensor:
        """(N,) eV: half the shifted-force pair energy of each pair, given to each partner."""
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        r = torch.linalg.norm(vectors, dim=1)
        rc = torch.tensor(self.cutoff, dtype=r.dtype, device=r.device)
        inside = r < rc
        r_safe = torch.where(inside, r, rc)
        pair = self._pair(r_safe) - self._pair(rc) - (r_safe - rc) * self._pair_derivative(rc)
        pair = torch.where(inside, pair, torch.zeros_like(pair))
        out = torch.zeros(batch.positions.shape[0], dtype=r.dtype, device=r.device)
        return out.index_add(0, edges.index[0], 0.5 * pair)
