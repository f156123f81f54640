"""Optional C++ kernels of the ACNN descriptor (``csrc/acnn_descriptor.cpp``), built on first use.

One pass over the centre-sorted edges computes Φ⁽¹⁾ (resolved by neighbour element) and the
unmixed angular densities D[i, z, n, lm] = Σ_{j: Z_j = z} g_n(r_ij) Y_lm(r̂_ij); a second pass
computes dL/dr_ij from dL/dΦ⁽¹⁾ and dL/dD, recomputing the basis, the harmonics and their
derivatives per edge. Nothing per edge is stored and there is no padded neighbour table: every
edge is read twice, against ~100 passes over padded (N, M, basis) tables on the torch path
(docs/performance_model.md). The mixing by the learnable W[Z_j] and the square of Eq. 9 stay in
torch (per atom, autograd-differentiable, also in W).

Built with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ~1 min, once per machine:
torch caches the build); float32, CPU, first derivatives only (not for training on forces).
Where the build fails, :func:`load` warns once and returns None, and the torch path is used.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("csrc") / "acnn_descriptor.cpp"
_STATE: dict = {"module": None, "tried": False}


def _build_name() -> str:
    """Extension name, unique per source and CPU instruction set: the build uses -march=native,
    and torch caches builds by name (in ~/.cache/torch_extensions, often shared by a cluster's
    nodes), so a node with other CPU flags must not load another node's build."""
    import hashlib
    import platform

    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            flags += next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    digest = hashlib.sha1(flags.encode() + _SOURCE.read_bytes()).hexdigest()[:12]
    return f"acnn_descriptor_kernels_{digest}"


def load():
    """The compiled extension module, or None (with one warning) where it cannot be built."""
    if _STATE["tried"]:
        return _STATE["module"]
    _STATE["tried"] = True
    try:
        from torch.utils.cpp_extension import load_inline

        source = _SOURCE.read_text()
        _STATE["module"] = load_inline(
            name=_build_name(), cpp_sources=[source], functions=["forward", "backward", "prune_edge_vectors", "scatter_edge_gradient"],
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=fast"],
            extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # noqa: BLE001 - compiler missing, build errors, unsupported platform
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        warnings.warn(f"model.compile: cpp: the C++ descriptor kernels could not be built ({type(exc).__name__}: "
                      f"{reason}); the model runs on the torch kernels")
        _STATE["module"] = None
    return _STATE["module"]


def available_for(vectors: torch.Tensor) -> bool:
    """Whether the C++ kernels are switched on and apply to these edge vectors (float32 on CPU)."""
    return _STATE.get("enabled", False) and vectors.dtype == torch.float32 and vectors.device.type == "cpu" \
        and load() is not None


def edge_helpers():
    """The compiled module for :mod:`acnn_mpi.model.forces`'s one-pass edge helpers
    (``prune_edge_vectors``, ``scatter_edge_gradient``; float32 and float64, CPU) when the C++
    kernels are switched on, else None."""
    return load() if _STATE.get("enabled", False) else None


def use_cpp_kernels(enabled: bool = True) -> bool:
    """Switch the C++ kernels on (building them now if needed) or off; returns whether they are on."""
    _STATE["enabled"] = bool(enabled) and load() is not None
    return _STATE["enabled"]


def _xy_orders(l_max: int) -> torch.Tensor:
    """(n_lm,) int32 signed m of every harmonic column l² + l + m."""
    return torch.tensor([m for l in range(l_max + 1) for m in range(-l, l + 1)], dtype=torch.int32)


class CppFeatures(torch.autograd.Function):
    """(edge vectors (E, 3), offsets (N+1), neighbour element (E,)) → (Φ⁽¹⁾ (N, S, n_r),
    D (N, S, n_a, n_lm)), differentiable once in the edge vectors."""

    @staticmethod
    def forward(ctx, vectors, offsets, neighbour_species, descriptor):
        module = load()
        d = descriptor
        zc = d.harmonics.z_coeff.to(torch.float32).contiguous()
        xy = _xy_orders(d.l_max)
        args = (d.r_cut_radial, d.r_cut_angular, d.n_radial, d.n_angular, d.l_max, zc, xy)
        radial, dens = module.forward(vectors, offsets, neighbour_species, d.n_elements, *args)
        ctx.args, ctx.radial_shape, ctx.dens_shape = args, radial.shape[1:], dens.shape[1:]
        ctx.save_for_backward(vectors, offsets, neighbour_species)
        return radial, dens

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_radial, grad_dens):
        vectors, offsets, neighbour_species = ctx.saved_tensors
        if grad_radial is None:
            grad_radial = torch.zeros(offsets.shape[0] - 1, *ctx.radial_shape, dtype=vectors.dtype)
        if grad_dens is None:
            grad_dens = torch.zeros(offsets.shape[0] - 1, *ctx.dens_shape, dtype=vectors.dtype)
        grad = load().backward(grad_radial.contiguous(), grad_dens.contiguous(), vectors, offsets,
                               neighbour_species, *ctx.args)
        return grad, None, None, None


def features(descriptor, vectors: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor,
             species: torch.Tensor, parameter_gradients: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ⁽¹⁾ (N, S·n_r) and Φ⁽²⁾ (N, :attr:`n_angular_features`) from centre-sorted edges, by the C++
    kernels (the densities; :meth:`ACNNDescriptor.contract` forms Φ⁽²⁾)."""
    d = descriptor
    n_atoms, S, n_a = species.shape[0], d.n_elements, d.n_angular
    offsets = torch.zeros(n_atoms + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.bincount(centre, minlength=n_atoms), 0)
    radial, dens = CppFeatures.apply(vectors.contiguous(), offsets, species.index_select(0, neighbour), d)
    mixing = d.angular_mixing if parameter_gradients else d.angular_mixing.detach()
    # W[z]ᵀ side by side: (n_a, S·n_a), column (z, n); density[i, c, lm] = Σ_{z,n} W[z]_{n,c} D[i, z, n, lm]
    side_by_side = mixing.view(n_a, S, n_a).permute(2, 1, 0).reshape(n_a, S * n_a)
    density = torch.matmul(side_by_side, dens.view(n_atoms, S * n_a, -1))       # (N, n_a, n_lm)
    return radial.reshape(n_atoms, -1), d.contract(density)
