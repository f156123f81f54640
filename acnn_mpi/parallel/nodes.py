"""Which ranks share a node: a shared-memory split of the communicator.

Labelling (DFT jobs per node), GPU assignment (local rank → device) and threads per rank need to
know the node layout; MPI's ``COMM_TYPE_SHARED`` split gives it without trusting host names.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeLayout:
    """This rank's place among the nodes of the job.

    node: index of this rank's node, 0 .. n_nodes−1 (numbered by the lowest world rank on it);
    local_rank / local_size: this rank's index among the ranks of its node, and their number;
    node_sizes: ranks on each node, indexed by node; hostname: this rank's host.
    """

    node: int
    n_nodes: int
    local_rank: int
    local_size: int
    node_sizes: tuple[int, ...]
    hostname: str

    def text(self) -> str:
        sizes = sorted(set(self.node_sizes))
        per_node = "/".join(str(s) for s in sizes)
        return f"{sum(self.node_sizes)} rank(s) on {self.n_nodes} node(s), {per_node} per node"


def node_layout(comm) -> NodeLayout:
    """The node layout of ``comm`` (a :class:`~acnn_mpi.parallel.comm.Comm`); collective."""
    hostname = socket.gethostname()
    if comm.mpi is None:
        return NodeLayout(node=0, n_nodes=1, local_rank=0, local_size=1, node_sizes=(1,),
                          hostname=hostname)
    from mpi4py import MPI

    local = comm.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        local_rank, local_size = local.Get_rank(), local.Get_size()
        leader = local.bcast(comm.rank, root=0)   # lowest world rank of this node
    finally:
        local.Free()
    leaders = comm.allgather(leader)
    order = sorted(set(leaders))
    sizes = tuple(leaders.count(first) for first in order)
    return NodeLayout(node=order.index(leader), n_nodes=len(order), local_rank=local_rank,
                      local_size=local_size, node_sizes=sizes, hostname=hostname)
