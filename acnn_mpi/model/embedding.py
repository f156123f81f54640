"""Multilayer perceptrons of the ACNN (paper Eqs. 10-12): the embeddings and the fitting network,
tanh layers (the paper) or SiLU.

Shapes: N = atoms. Inputs and outputs are dimensionless features, except the fitting network's
output, the atomic energy E_i in eV.
"""

from __future__ import annotations

from typing import Sequence

import torch


#: hidden-layer activations: "tanh" is the paper's Eq. 12, "silu" x·sigmoid(x)
ACTIVATIONS = {"tanh": torch.tanh, "silu": torch.nn.functional.silu}


class MLP(torch.nn.Module):
    """mlp(x) = f_L ∘ … ∘ f_1(x) with f_l(x) = σ(W_l x + b_l), σ = tanh (Eqs. 11-12) or SiLU.

    Args:
        n_in: input width.
        widths: hidden widths, one activated layer each.
        n_out: when given, a final linear layer (no activation) to ``n_out`` outputs (the fitting
            network's energy head); when None the output is the last hidden layer.
        activation: a key of :data:`ACTIVATIONS`.
        residual: a hidden layer whose width equals its input's adds its input,
            x ← x + σ(W x + b) (the fitting network of DeePMD-kit).
    """

    def __init__(self, n_in: int, widths: Sequence[int], n_out: int | None = None,
                 dtype: torch.dtype = torch.float32, activation: str = "tanh", residual: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = ACTIVATIONS[activation]
        self.residual = bool(residual)
        layers = []
        width = int(n_in)
        for w in widths:
            layers.append(torch.nn.Linear(width, int(w), dtype=dtype))
            width = int(w)
        self.hidden = torch.nn.ModuleList(layers)
        self.head = torch.nn.Linear(width, int(n_out), dtype=dtype) if n_out is not None else None
        self.n_out = int(n_out) if n_out is not None else width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, n_in) → (N, n_out)."""
        for layer in self.hidden:
            y = self.activation(layer(x))
            x = x + y if self.residual and y.shape == x.shape else y
        if self.head is not None:
            x = self.head(x)
        return x


class AtomEmbedding(torch.nn.Module):
    """Eq. 10 plus chemistry: x_i = mlp₁(Φ⁽¹⁾_i) ‖ mlp₂(Φ⁽²⁾_i) ‖ e(Z_i).

    The descriptors are first standardized with fixed per-feature shift and scale (buffers, set
    from data by :meth:`ACNN.fit_descriptor_statistics`); e(Z_i) is a learnable embedding of the
    central atom's element with the width of the last embedding layer.

    Args:
        n_radial_features / n_angular_features: widths of Φ⁽¹⁾ and Φ⁽²⁾.
        n_elements: S.
        widths: embedding MLP widths (paper: [64, 64]).
        activation: of the hidden layers (:class:`MLP`).
    """

    def __init__(self, n_radial_features: int, n_angular_features: int, n_elements: int,
                 widths: Sequence[int], dtype: torch.dtype = torch.float32, activation: str = "tanh"):
        super().__init__()
        self.radial_mlp = MLP(n_radial_features, widths, dtype=dtype, activation=activation)
        self.angular_mlp = MLP(n_angular_features, widths, dtype=dtype, activation=activation)
        self.element = torch.nn.Embedding(n_elements, int(widths[-1]), dtype=dtype)
        torch.nn.init.normal_(self.element.weight, std=0.5)
        self.register_buffer("radial_shift", torch.zeros(n_radial_features, dtype=dtype))
        self.register_buffer("radial_scale", torch.ones(n_radial_features, dtype=dtype))
        self.register_buffer("angular_shift", torch.zeros(n_angular_features, dtype=dtype))
        self.register_buffer("angular_scale", torch.ones(n_angular_features, dtype=dtype))

    @property
    def n_out(self) -> int:
        return self.radial_mlp.n_out + self.angular_mlp.n_out + self.element.embedding_dim

    def standardize(self, radial: torch.Tensor, angular: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw Φ⁽¹⁾ (N, n_radial_features) and Φ⁽²⁾ (N, n_angular_features), shifted and scaled."""
        return (radial - self.radial_shift) * self.radial_scale, (angular - self.angular_shift) * self.angular_scale

    def embed(self, radial: torch.Tensor, angular: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Standardized radial and angular features, species (N,) → x (N, n_out)."""
        return torch.cat(
            [self.radial_mlp(radial), self.angular_mlp(angular), self.element(species)], dim=1
        )

    def forward(self, radial: torch.Tensor, angular: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """radial (N, n_radial_features), angular (N, n_angular_features), species (N,) → (N, n_out)."""
        return self.embed(*self.standardize(radial, angular), species)
