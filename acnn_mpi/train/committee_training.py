"""Training a committee of k models side by side (collective over a communicator).

The ranks split into min(k, size) groups (:func:`~acnn_mpi.train.committee.member_groups`); each
group trains its members data-parallel, one after the other, with :func:`train_model`. The
campaign (``search.committee``) keeps member 0 as its model; ``acnn_mpi train`` with a committee
writes the members' mean (:class:`~acnn_mpi.train.committee.CommitteeMean`) as the model:

    OUT/member_M/     each member's training folder (model.pt, checkpoint.pt, metrics), M = 0..k−1
    OUT/model.pt      the committee mean (one file; every model loader reads it)
    OUT/metrics.json  the mean's final errors ("final") and each member's ("members")
"""

from __future__ import annotations

import dataclasses
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from .committee import CommitteeMean, member_config, member_groups

log = logging.getLogger(__name__)


def train_in_groups(comm, k: int, train_one: Callable[[int, Any], Any]) -> tuple[dict, bool]:
    """Collective: call ``train_one(member, group_comm)`` for each member of this rank's group, in
    turn, stopping after a member whose result says ``stopped``. Returns ({member: result} of this
    rank's group, whether any member on any rank stopped)."""
    groups = member_groups(comm.size, k)
    color = comm.rank % len(groups)
    group = comm.split(color)
    results, stopped = {}, False
    try:
        for member in groups[color]:
            if stopped:
                break
            results[member] = train_one(member, group)
            stopped = stopped or bool(getattr(results[member], "stopped", False))
    finally:
        if group is not comm:
            group.free()
    comm.sleeping_barrier()   # groups finish at different times; MPICH's collectives busy-spin
    return results, bool(comm.allreduce(int(stopped)))


def reports_for_group(comm, k: int) -> bool:
    """Whether this rank reports its group's results in :func:`train_in_groups` (the lowest rank
    of each group)."""
    return comm.rank < len(member_groups(comm.size, k))


def member_dir(out_dir: str | Path, member: int) -> Path:
    """The training folder of committee member ``member`` inside ``out_dir``."""
    return Path(out_dir) / f"member_{member}"


def train_committee_model(config, data: Any, out_dir: str | Path, comm=None, k: int = 2, *,
                          resume: bool = False, refine_from: Optional[str | Path] = None,
                          steps: Optional[int] = None, valid: Any = None, device: Optional[str] = None,
                          should_stop: Optional[Callable[[], bool]] = None):
    """Train k members (seeds ``training.seed + m``, one validation split: the seed's) and write
    their mean as ``out_dir/model.pt``, with its errors in ``out_dir/metrics.json``.

    Returns the :class:`~acnn_mpi.train.api.TrainResult` of the mean (``metrics``: its errors on
    the held-out split, the ``valid`` sources and the training split; ``steps``, ``wall_s``:
    member 0's, the other members trained alongside) with ``metrics["members"]``: each member's
    final errors. ``comm``: the job's communicator (every rank calls; None = serial). A stopped
    run writes no mean (``stopped`` True; resume to finish).
    """
    from .api import _serial_comm, train_model

    comm = comm or _serial_comm()
    out_dir = Path(out_dir)
    split_seed = int(config.training.seed)

    def train_one(member, group):
        return train_model(member_config(config, member), data, member_dir(out_dir, member), group,
                           resume=resume, refine_from=refine_from, steps=steps, valid=valid,
                           device=device, should_stop=should_stop, split_seed=split_seed)

    groups = member_groups(comm.size, k)
    log.info("committee of %d: %s; each member's progress is logged by the first rank of its group "
             "and written to %s/member_M/metrics.csv", k, "; ".join(
                 f"member(s) {', '.join(map(str, members))} on rank(s) "
                 f"{','.join(str(r) for r in range(g, comm.size, len(groups)))}"
                 for g, members in enumerate(groups)), out_dir)
    with _group_root_progress(comm, k):
        results, stopped = train_in_groups(comm, k, train_one)
    gathered = comm.allgather({m: r for m, r in results.items() if reports_for_group(comm, k)})
    members = {m: r for part in gathered for m, r in part.items()}
    result = dataclasses.replace(members[0], model_path=out_dir / "model.pt",
                                 metrics_json=out_dir / "metrics.json", metrics={}, stopped=stopped)
    if stopped:
        return result
    mean = CommitteeMean([_load_member(out_dir, m) for m in range(k)])
    result.metrics = _mean_errors(mean, config, data, valid, member_dir(out_dir, 0), comm)
    result.metrics["members"] = {m: members[m].metrics for m in sorted(members)}
    if comm.is_root:
        from .models import save_model

        save_model(mean, result.model_path)
        _write_metrics(result, k)
    comm.barrier()
    log.info("committee of %d written to %s", k, result.model_path)
    return result


@contextmanager
def _group_root_progress(comm, k: int):
    """While the members train, the first rank of every group logs INFO lines too (each line carries
    its rank), so the log follows every member and not only the root's; the level is restored after.
    Nothing changes where the ``acnn_mpi`` logger already lets INFO through or was never set up."""
    logger = logging.getLogger("acnn_mpi")
    before = logger.level
    if reports_for_group(comm, k) and not comm.is_root and before > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(before)


def _load_member(out_dir: Path, member: int):
    from .models import load_model

    return load_model(member_dir(out_dir, member) / "model.pt")


def _mean_errors(mean, config, data, valid, first_dir: Path, comm) -> dict:
    """The mean's errors on member 0's split of ``data`` and on ``valid`` (collective)."""
    from ase.data import atomic_numbers

    from .api import _read_screened
    from .checkpoint import load_checkpoint
    from .frames import FrameBatcher
    from ..model.forces import model_dtype_device
    from .metrics import evaluate_errors

    allowed = [atomic_numbers[e] for e in mean.elements] or None   # as train_model screens

    def read_all():
        split = load_checkpoint(first_dir / "checkpoint.pt")["data"]
        frames = _read_screened(data, None, allowed, "training")[0]
        extra = _read_screened(valid, None, allowed, "validation")[0]
        return frames, extra, list(split["train_ids"]), list(split["valid_ids"])

    frames, extra, train_ids, valid_ids = comm.root_then_bcast(read_all)
    dtype, device = model_dtype_device(mean)
    batcher = FrameBatcher(frames, mean.cutoff, dtype=dtype, device=device)
    metrics = {}
    if valid_ids:
        metrics["valid"] = evaluate_errors(mean, None, batcher=batcher, indices=valid_ids, comm=comm)
    if extra:
        metrics["extra"] = evaluate_errors(mean, extra, comm=comm)
    if train_ids:
        metrics["train"] = evaluate_errors(mean, None, batcher=batcher, indices=train_ids, comm=comm)
    return metrics


def _write_metrics(result, k: int) -> None:
    from .checkpoint import atomic_text

    record = {"committee": k, "records": _member_records(result.checkpoint_path.parent),
              "final": {"step": result.steps, "stopped": result.stopped,
                        **{key: v for key, v in result.metrics.items() if key != "members"}},
              "members": result.metrics["members"]}
    atomic_text(json.dumps(record, indent=1, default=str), result.metrics_json)


def _member_records(first_dir: Path) -> list:
    """Member 0's progress records (step, losses, validation), for tools that read the steps."""
    path = first_dir / "metrics.json"
    return json.loads(path.read_text()).get("records", []) if path.is_file() else []
