"""The start-up of every rank, in the order that matters.

1. MPI (mpi4py only, no numpy yet); 2. the node layout (a shared-memory split); 3. threads per rank
from the layout, written to the OpenMP/BLAS variables before numpy loads; 4. ASE made serial.
A launcher whose rank count differs from the world's size is warned about on every process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .comm import Comm, get_world, size_mismatch
from .nodes import NodeLayout, node_layout
from .threads import choose_threads, set_thread_environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Startup:
    """comm: the job's world; layout: this rank's node layout; threads: torch/BLAS threads per rank."""

    comm: Comm
    layout: NodeLayout
    threads: int


def start(requested_threads: int | None) -> Startup:
    """Initialize MPI, find the node layout and set the threads per rank (call once, first)."""
    comm = get_world(serial_ase=False)
    layout = node_layout(comm)
    threads = choose_threads(requested_threads, layout.cpu_share)
    set_thread_environment(threads)
    comm = get_world()
    return Startup(comm, layout, threads)


def log_startup(startup: Startup, version: str) -> None:
    """One line on the root: ranks, nodes, ranks per node, threads; a mismatch warning on all."""
    comm, layout = startup.comm, startup.layout
    log.info("acnn_mpi %s: %s, %d torch/BLAS thread(s) per rank", version, layout.text(),
             startup.threads)
    problem = size_mismatch(comm.size)
    if problem:
        log.warning("%s", problem)
