"""Threads per rank: one per rank when several ranks share a node, so 192 ranks on 192 cores do
not start 192² BLAS/OpenMP threads."""

from __future__ import annotations

import os

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def choose_threads(requested: int | None, n_ranks: int) -> int:
    """Threads for this rank: ``requested`` if given, else 1 under MPI, else all cores."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads per rank must be >= 1, got {requested}")
        return requested
    if n_ranks > 1:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def set_thread_environment(n_threads: int) -> None:
    """Set OpenMP/BLAS thread variables; must run before numpy or torch is imported to bind BLAS.

    A value the user set in the environment is kept.
    """
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(n_threads))


def apply_torch_threads(n_threads: int) -> None:
    """Tell torch how many intra-op threads to use (inter-op: 1, nothing to overlap per rank)."""
    import torch

    torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
