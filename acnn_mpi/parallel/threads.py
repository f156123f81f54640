"""Threads per rank from the node layout: the ranks of a node share its cores, so 192 ranks on 192
cores do not start 192² BLAS/OpenMP threads and 4 ranks on a 192-core GPU node use 48 each."""

from __future__ import annotations

import os

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def choose_threads(requested: int | None, cpu_share: int) -> int:
    """Threads for this rank: ``requested`` if given, else ``cpu_share`` (the CPUs of this rank
    divided among the ranks of its node that may run on them; NodeLayout.cpu_share)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads per rank must be >= 1, got {requested}")
        return requested
    return max(1, int(cpu_share))


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
