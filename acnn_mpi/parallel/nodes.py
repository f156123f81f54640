"""Which ranks share a node: a shared-memory split of the communicator.

Labelling (DFT jobs per node), GPU assignment (local rank → device) and threads per rank need to
know the node layout; MPI's ``COMM_TYPE_SHARED`` split gives it without trusting host names.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeLayout:
    """This rank's place among the nodes of the job.

    node: index of this rank's node, 0 .. n_nodes−1 (numbered by the lowest world rank on it);
    local_rank / local_size: this rank's index among the ranks of its node, and their number;
    node_sizes: ranks on each node, indexed by node; hostname: this rank's host;
    cpu_share: the CPUs this rank may run on (its affinity) divided by the ranks of its node whose
    affinity overlaps it, at least 1: the default number of threads per rank.
    """

    node: int
    n_nodes: int
    local_rank: int
    local_size: int
    node_sizes: tuple[int, ...]
    hostname: str
    cpu_share: int = 1

    def text(self) -> str:
        sizes = sorted(set(self.node_sizes))
        per_node = "/".join(str(s) for s in sizes)
        return f"{sum(self.node_sizes)} rank(s) on {self.n_nodes} node(s), {per_node} per node"


def node_layout(comm) -> NodeLayout:
    """The node layout of ``comm`` (a :class:`~acnn_mpi.parallel.comm.Comm`).

    Collective the first time for a communicator (every rank must call); later calls return the
    layout kept on ``comm``.
    """
    layout = getattr(comm, "_node_layout", None)
    if layout is None:
        layout = _split_layout(comm)
        comm._node_layout = layout
    return layout


def _split_layout(comm) -> NodeLayout:
    hostname = socket.gethostname()
    cpus = _affinity()
    if comm.mpi is None:
        return NodeLayout(node=0, n_nodes=1, local_rank=0, local_size=1, node_sizes=(1,),
                          hostname=hostname, cpu_share=len(cpus))
    from mpi4py import MPI

    local = comm.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        local_rank, local_size = local.Get_rank(), local.Get_size()
        leader = local.bcast(comm.rank, root=0)   # lowest world rank of this node
        neighbours = local.allgather(sorted(cpus))
    finally:
        local.Free()
    leaders = comm.allgather(leader)
    order = sorted(set(leaders))
    sizes = tuple(leaders.count(first) for first in order)
    return NodeLayout(node=order.index(leader), n_nodes=len(order), local_rank=local_rank,
                      local_size=local_size, node_sizes=sizes, hostname=hostname,
                      cpu_share=cpu_share(cpus, neighbours))


def cpu_share(cpus: set[int], neighbours: list) -> int:
    """CPUs per rank: ``cpus`` (this rank's affinity) divided by the number of ``neighbours``
    (affinities of the ranks on the node, this one included) that overlap it; at least 1.

    Ranks bound to their own cores get all of them; ranks that may all run anywhere on the node
    split it evenly (192 ranks on 192 cores: 1 each; 4 ranks: 48 each).
    """
    overlapping = sum(1 for other in neighbours if cpus.intersection(other))
    return max(1, len(cpus) // max(overlapping, 1))


def _affinity() -> set[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))
