"""The relaxation service: the one production path of the ``relax`` command and the campaign's CSP
stage.

The root deals small tasks (rows of an input file, or a chunk of structure ids with its seed) with
:func:`acnn_mpi.parallel.tasks.run_dynamic`; on each rank ``make(task)`` turns a task into
structures (reading them, or generating them on the rank), a :class:`~acnn_mpi.relax.worker.RelaxWorker`
keeps the rank's one :class:`~acnn_mpi.relax.runner.BatchRelaxer` batch continuously full across
tasks, and finished structures are appended to the rank's one shard of the output directory
(:mod:`acnn_mpi.relax.shards`), with optional extra columns computed where they were relaxed
(``annotate``: the campaign's fingerprints). Only counts go back to the root.

Each structure has its own optimizer state in the batch (:mod:`acnn_mpi.relax.optimizer`), so which
structures share a batch changes nothing but the order results are committed in: a job killed and
resumed relaxes the rest to the same minima.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .runner import BatchRelaxer
from .shards import ShardWriter
from .worker import RelaxWorker


@dataclass
class ServiceSummary:
    """What one rank did in one run of the service (gathered on the root)."""

    rank: int
    statuses: dict = field(default_factory=dict)
    steps: int = 0
    evaluations: int = 0    # batched model calls
    cpu_s: float = 0.0
    busy_s: float = 0.0     # wall seconds the batch spent stepping

    @property
    def structures(self) -> int:
        return sum(self.statuses.values())


class RelaxService:
    """One rank's side of the service: ``service(task) -> {"finished": n, "statuses": {...}}``.

    Args:
        relaxer: the engine (its batch size is the rank's batch).
        writer: the rank's shard.
        make: task -> structures (ASE ``Atoms`` with ``info['structure_id']``).
        annotate: optional results -> {column: (n, ...) array}, appended with the results.
        commit_every: results per shard commit; lookahead: structures queued beyond the batch.
    """

    def __init__(self, relaxer: BatchRelaxer, writer: ShardWriter, make: Callable[[object], Sequence], *,
                 annotate: Optional[Callable[[list], dict]] = None, commit_every: int = 16,
                 lookahead: int = 16, rank: int = 0):
        self.relaxer, self.writer, self.make, self.annotate = relaxer, writer, make, annotate
        self.rank = rank
        self._cpu_start = time.process_time()
        self.worker = RelaxWorker(relaxer, self._commit, commit_every=commit_every, lookahead=lookahead)

    def _commit(self, results: list) -> None:
        self.writer.append(results, self.annotate(results) if self.annotate is not None else None)

    def __call__(self, task) -> dict:
        return self.worker.work(self.make(task))

    def finish(self, drain: bool = True) -> ServiceSummary:
        """Relax what is left (``drain``) or stop after the current step; the rank's summary."""
        self.worker.finish(drain=drain)
        return ServiceSummary(rank=self.rank, statuses=dict(self.worker.statuses), steps=self.worker.steps,
                              evaluations=self.relaxer.n_steps, cpu_s=time.process_time() - self._cpu_start,
                              busy_s=self.worker.busy_s)


def serve(comm, tasks, service: RelaxService, on_result=None, *, should_stop=None, abort=None,
          root_works: Optional[bool] = None) -> list[ServiceSummary]:
    """Run ``service`` on every rank over ``tasks`` (read on the root) and gather the ranks'
    summaries on the root ([] elsewhere). Once ``should_stop()`` (polled on the root) is true no
    new task is dealt; every batch is then drained unless ``abort()`` (default: ``should_stop``) is
    true on the root at the end (a signal: what is not committed is redone on restart).
    ``on_result(task, counts, rank)`` is called on the root as ranks hand tasks back."""
    from ..parallel.tasks import run_dynamic

    try:
        run_dynamic(comm, tasks, service, on_result, root_works=root_works, should_stop=should_stop)
    except BaseException:
        service.finish(drain=False)
        raise
    abort = abort if abort is not None else should_stop
    comm.sleeping_barrier()  # MPICH's blocking collectives spin: a rank done early would burn its core
    stop = bool(comm.bcast(abort() if (comm.is_root and abort is not None) else False))
    summary = service.finish(drain=not stop)
    comm.sleeping_barrier()  # ranks drain their batches at different times
    summaries = comm.gather(summary)
    return list(summaries) if comm.is_root else []


def total_statuses(summaries: Sequence[ServiceSummary]) -> Counter:
    out: Counter = Counter()
    for s in summaries:
        out.update(s.statuses)
    return out
