"""Batched Fréchet cell filter: atomic positions and the lattice as one set of coordinates.

The same parametrization as ASE's ``FrechetCellFilter`` (after JuLIP's ``expcell``), for B
structures at once. With the reference cell C₀ (rows) fixed when a structure enters the optimizer,
the current cell is C = C₀ Fᵀ with the deformation gradient F = exp(L), and atoms are stored in the
reference frame r₀ = r F⁻ᵀ (so r = r₀ Fᵀ). The optimizer sees, per structure, 3 + n rows of 3:

    rows 0-2: X = c · L   (c = ``exp_cell_factor``, ASE's default: the number of atoms)
    rows 3.. : r₀         (Å)

and minimizes the enthalpy H = E + P V. Its gradient, with the virial including the pressure
W = −V (σ + P I) (σ in ASE's sign, positive = tensile):

    −∂H/∂r₀ = f F                         (f the Cartesian forces)
    −∂H/∂X  = Dexp*_L(W F⁻ᵀ) / c           (adjoint of the Fréchet derivative of exp at L)

Dexp*_L(U) = Dexp_{Lᵀ}(U) is the upper-right block of exp([[Lᵀ, U], [0, Lᵀ]]): one batched 6×6
matrix exponential, no per-component loop. The log coordinates keep cell steps well conditioned
(a step in X is a relative strain) and make the cell gradient exact, as in ASE.
"""

from __future__ import annotations

import torch


def deformation_gradient(cell_dof: torch.Tensor, cell_factor: torch.Tensor) -> torch.Tensor:
    """F = exp(X / c): (B, 3, 3) from the cell rows X (B, 3, 3) and c (B,)."""
    return torch.linalg.matrix_exp(cell_dof / cell_factor[:, None, None])


def frechet_exp_adjoint(log_deformation: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Dexp*_L(U) = Dexp_{Lᵀ}(U) for (B, 3, 3) L and U: the gradient with respect to L of
    ⟨exp(L), U⟩ (Frobenius), as ASE's loop over ``scipy.linalg.expm_frechet`` computes it."""
    b = log_deformation.shape[0]
    block = torch.zeros(b, 6, 6, dtype=log_deformation.dtype, device=log_deformation.device)
    lt = log_deformation.transpose(1, 2)
    block[:, :3, :3] = lt
    block[:, 3:, 3:] = lt
    block[:, :3, 3:] = direction
    return torch.linalg.matrix_exp(block)[:, :3, 3:]


def geometry(
    cell_dof: torch.Tensor,
    reference_positions: torch.Tensor,
    reference_cell: torch.Tensor,
    cell_factor: torch.Tensor,
    system_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cartesian positions (N, 3), cell (B, 3, 3) and F (B, 3, 3) from the filter coordinates.

    Args:
        cell_dof: X (B, 3, 3); reference_positions: r₀ (N, 3); reference_cell: C₀ (B, 3, 3);
        cell_factor: c (B,); system_idx: (N,) structure of each atom.
    """
    deformation = deformation_gradient(cell_dof, cell_factor)
    ft = deformation.transpose(1, 2)
    cell = torch.bmm(reference_cell, ft)
    positions = torch.einsum("ni,nij->nj", reference_positions, ft.index_select(0, system_idx))
    return positions, cell, deformation


def reference_positions(positions: torch.Tensor, deformation: torch.Tensor, system_idx: torch.Tensor) -> torch.Tensor:
    """r₀ = r F⁻ᵀ (N, 3) for Cartesian positions r (N, 3) and F (B, 3, 3)."""
    inv_t = torch.linalg.inv(deformation).transpose(1, 2)
    return torch.einsum("ni,nij->nj", positions, inv_t.index_select(0, system_idx))


def filter_forces(
    forces: torch.Tensor,
    stress: torch.Tensor,
    cell: torch.Tensor,
    cell_dof: torch.Tensor,
    deformation: torch.Tensor,
    cell_factor: torch.Tensor,
    pressure: torch.Tensor,
    system_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generalized forces −∂H/∂(coordinates) and the stress residual.

    Args:
        forces: (N, 3) eV/Å Cartesian; stress: (B, 3, 3) eV/Å³ (ASE sign); cell: (B, 3, 3);
        cell_dof: X (B, 3, 3); deformation: F (B, 3, 3); cell_factor: c (B,);
        pressure: (B,) eV/Å³; system_idx: (N,).

    Returns:
        (atom rows (N, 3) = f F, cell rows (B, 3, 3) = Dexp*_L(W F⁻ᵀ)/c, residual σ + P I (B, 3, 3)).
    """
    volume = torch.linalg.det(cell).abs()
    eye = torch.eye(3, dtype=stress.dtype, device=stress.device)
    residual = stress + pressure[:, None, None] * eye
    virial = -volume[:, None, None] * residual
    ucf = torch.linalg.solve(deformation, virial.transpose(1, 2)).transpose(1, 2)  # W F^-T
    log_deformation = cell_dof / cell_factor[:, None, None]
    cell_rows = frechet_exp_adjoint(log_deformation, ucf) / cell_factor[:, None, None]
    atom_rows = torch.einsum("ni,nij->nj", forces, deformation.index_select(0, system_idx))
    return atom_rows, cell_rows, residual
