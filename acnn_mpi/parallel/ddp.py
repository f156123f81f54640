"""Data-parallel training over MPI ranks: a torch.distributed process group agreed through MPI.

The MPI communicator says who is who (rank, world size); torch.distributed moves the gradients
(gloo on CPU, nccl on CUDA). The root opens a TCP store on a free port (the operating system picks
it, so there is no race between choosing and binding), broadcasts host and port over MPI, and every
rank joins the process group with the rank and size of the :class:`~acnn_mpi.parallel.comm.Comm`.

Gradients are summed in one ``all_reduce`` of a flat buffer (:meth:`DataParallel.sum_gradients`):
each rank's loss is already divided by the *global* number of structures in the minibatch, so the
sum over ranks is exactly the gradient of the global loss, whatever the split. No DDP wrapper is
used: DDP averages gradients over ranks, i.e. weights every rank equally however many structures
it got, which is wrong for an uneven split (e.g. 3 structures on 2 ranks). (DDP itself does cope
with the double differentiation of force training: checked with torch 2.13, identical gradients.)

With one rank nothing here touches torch.distributed: :func:`setup_data_parallel` returns a serial
stand-in whose reductions are identities.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Iterable, Optional

import torch

from .comm import Comm

log = logging.getLogger(__name__)


class SerialParallel:
    """One process: every reduction is the identity."""

    rank = 0
    size = 1
    backend = None

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        for p in parameters:
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast_parameters(self, module: torch.nn.Module, root: int = 0) -> None:
        return None

    def close(self) -> None:
        return None


class DataParallel(SerialParallel):
    """Members of a torch.distributed process group built by :func:`setup_data_parallel`."""

    def __init__(self, rank: int, size: int, backend: str, device: torch.device):
        self.rank = rank
        self.size = size
        self.backend = backend
        self.device = device

    def _reduce_flat(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1) for t in tensors]).to(self.device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, start = [], 0
        for t in tensors:
            out.append(flat[start:start + t.numel()].view_as(t).to(t.device))
            start += t.numel()
        return out

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every parameter's gradient by its sum over ranks (missing gradients count as 0)."""
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not params:
            return
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in params:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group in by_dtype.values():
            for p, summed in zip(group, self._reduce_flat([p.grad for p in group])):
                p.grad.copy_(summed)

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a small tensor (loss parts, counters, a stop flag)."""
        return self._reduce_flat([tensor.detach()])[0]

    def broadcast_parameters(self, module: torch.nn.Module, root: int = 0) -> None:
        """Copy the root's parameters and buffers to every rank."""
        import torch.distributed as dist

        tensors = [t for t in list(module.parameters()) + list(module.buffers())
                   if t.is_floating_point()]
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1) for t in tensors]).to(self.device)
        dist.broadcast(flat, src=root)
        start = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(flat[start:start + t.numel()].view_as(t))
                start += t.numel()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _root_address(comm: Comm) -> str:
    """Loopback when every rank runs on the root's host, else the root's host name."""
    hosts = comm.allgather(socket.gethostname())
    if all(h == hosts[0] for h in hosts):
        return "127.0.0.1"
    return socket.getfqdn(hosts[0])


def setup_data_parallel(comm: Comm, device: torch.device | str = "cpu",
                        backend: Optional[str] = None, timeout_s: float = 600.0) -> SerialParallel:
    """Join the job's ranks into a torch.distributed group (or return a serial stand-in).

    Args:
        comm: the job's communicator; its rank and size become the group's.
        device: where the gradients live; CUDA selects nccl, CPU gloo (unless ``backend`` is given).
        backend: override ("gloo" or "nccl").
        timeout_s: how long collectives may wait for a slow rank.

    MASTER_ADDR / MASTER_PORT set by the user are honoured; otherwise the root picks them.
    """
    device = torch.device(device)
    if comm.size == 1:
        return SerialParallel()
    import torch.distributed as dist

    if dist.is_initialized():
        raise RuntimeError("a torch.distributed process group is already initialized")
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    address = os.environ.get("MASTER_ADDR") or _root_address(comm)
    if address == "127.0.0.1" and backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    wanted_port = int(os.environ.get("MASTER_PORT", "0"))
    timeout = timedelta(seconds=timeout_s)
    store = None
    if comm.is_root:
        store = dist.TCPStore(address if address != "127.0.0.1" else "127.0.0.1", wanted_port,
                              comm.size, True, timeout=timeout, wait_for_workers=False)
        port = store.port
    else:
        port = None
    port = comm.bcast(port)
    # The store carries the address: MASTER_ADDR/PORT are not written back to the environment,
    # where the next training of the same job (the campaign's next iteration) would reuse a port
    # that is still taken.
    if not comm.is_root:
        store = dist.TCPStore(address, port, comm.size, False, timeout=timeout)
    dist.init_process_group(backend=backend, store=store, rank=comm.rank, world_size=comm.size,
                            timeout=timeout)
    log.info("torch.distributed: %s over %d ranks at %s:%d", backend, comm.size, address, port)
    return DataParallel(comm.rank, comm.size, backend, device)
