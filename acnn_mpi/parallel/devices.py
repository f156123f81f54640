"""Which torch device each rank uses: its own GPU on the node, a shared one, or the CPU.

``model.device: auto`` means CUDA where torch sees a device, else the CPU. On a node with G visible
GPUs and L ranks, local rank ℓ takes GPU ``ℓ mod G`` (round robin), or, with
``parallel.ranks_per_gpu = k``, GPU ``(ℓ // k) mod G`` so that k neighbouring ranks share each GPU
(ranks packed on one socket then share the GPU next to it). When the launcher already gives each
rank a single GPU (``CUDA_VISIBLE_DEVICES`` per rank, Slurm ``--gpus-per-task=1``), torch sees one
device and every rank takes ``cuda:0``, which is its own.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ..errors import UserError
from .nodes import NodeLayout, node_layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    """device: a torch device string ("cpu", "cuda:1"); reason: why, for the log."""

    device: str
    reason: str


def assign_device(requested: str, local_rank: int, local_size: int, n_gpus: int,
                  ranks_per_gpu: Optional[int] = None) -> DeviceChoice:
    """The device of local rank ``local_rank`` of ``local_size`` ranks on a node with ``n_gpus``.

    Args:
        requested: "auto" (CUDA if any GPU, else CPU), "cpu" or "cuda" (a GPU is required).
        local_rank / local_size: this rank's place among the ranks of its node.
        n_gpus: CUDA devices this rank sees (``torch.cuda.device_count()``).
        ranks_per_gpu: neighbouring ranks per GPU; None = round robin (``local_rank mod n_gpus``).

    Raises:
        UserError: "cuda" requested without a GPU, or a bad ``ranks_per_gpu``.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise UserError(f"model.device = {requested!r}: use auto, cpu or cuda")
    if ranks_per_gpu is not None and ranks_per_gpu < 1:
        raise UserError(f"parallel.ranks_per_gpu = {ranks_per_gpu}: must be at least 1")
    if requested == "cpu":
        return DeviceChoice("cpu", "model.device = cpu")
    if n_gpus < 1:
        if requested == "cuda":
            raise UserError("model.device = cuda but torch sees no CUDA device on this node "
                            "(use device: auto or cpu, or a CUDA build of torch)")
        return DeviceChoice("cpu", "no CUDA device")
    per_gpu = ranks_per_gpu or 1

    def gpu_of(rank: int) -> int:
        return (rank // per_gpu) % n_gpus

    index = gpu_of(local_rank)
    sharing = sum(gpu_of(r) == index for r in range(local_size))
    used = len({gpu_of(r) for r in range(local_size)})
    rule = (f"local rank mod {n_gpus} GPU(s)" if ranks_per_gpu is None
            else f"{ranks_per_gpu} neighbouring local rank(s) per GPU")
    return DeviceChoice(f"cuda:{index}", f"{rule}: {sharing} rank(s) on this rank's GPU, "
                                         f"{used} of {n_gpus} GPU(s) in use")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


_logged: set = set()


def select_device(requested: Optional[str], comm, ranks_per_gpu: Optional[int] = None,
                  layout: Optional[NodeLayout] = None) -> str:
    """This rank's torch device string for ``requested`` (collective over ``comm``).

    Every rank resolves its own device from its node layout and the GPUs it sees; the root logs a
    summary of the choice of all ranks (once per distinct summary).
    """
    layout = layout or node_layout(comm)
    choice = assign_device(requested or "auto", layout.local_rank, layout.local_size, _cuda_count(),
                           ranks_per_gpu)
    choices = comm.gather((layout.hostname, choice.device, choice.reason))
    if comm.is_root:
        text = summarize(choices)
        if text not in _logged:
            _logged.add(text)
            log.info("devices (model.device = %s): %s", requested or "auto", text)
    return choice.device


def summarize(choices: list[tuple[str, str, str]]) -> str:
    """"cuda:0 ×2, cuda:1 ×2 on 2 node(s) (local rank 3 mod 2 GPU(s); ...)" from (host, device,
    reason) per rank."""
    counts = Counter(device for _, device, _ in choices)
    hosts = {host for host, _, _ in choices}
    devices = ", ".join(f"{device} ×{n}" for device, n in sorted(counts.items()))
    return f"{devices} over {len(choices)} rank(s) on {len(hosts)} node(s) ({choices[-1][2]})"
