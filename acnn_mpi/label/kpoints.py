"""Monkhorst-Pack meshes from a k-point spacing given in units of 2π Å⁻¹ (as in the paper).

The paper's SCF spacing "2π × 0.03 Å⁻¹" means: along each reciprocal lattice vector b_i (with the
2π), use n_i = ceil(|b_i| / (2π × 0.03)) points, i.e. n_i = ceil(|a*_i| / 0.03) with a*_i the
reciprocal vectors without 2π (VASP's KSPACING convention up to the 2π). Non-periodic directions
get one point.
"""

from __future__ import annotations

import math

import numpy as np


def kpoint_mesh(cell, spacing: float, pbc=(True, True, True)) -> tuple[int, int, int]:
    """k-point mesh (n1, n2, n3) for ``cell`` (rows a, b, c in Å) and ``spacing`` (2π Å⁻¹)."""
    if not spacing > 0:
        raise ValueError(f"k-point spacing must be > 0, got {spacing}")
    cell = np.asarray(cell, dtype=float)
    reciprocal = np.linalg.inv(cell).T   # rows a*_i with a_i · a*_j = δ_ij (no 2π)
    mesh = []
    for i in range(3):
        if not pbc[i]:
            mesh.append(1)
            continue
        length = float(np.linalg.norm(reciprocal[i]))
        mesh.append(max(1, math.ceil(length / spacing - 1e-9)))
    return tuple(mesh)
