"""A rank's relaxation worker: the batch keeps stepping in a background thread while the main
thread talks to the root.

With :func:`acnn_mpi.parallel.tasks.run_dynamic` a rank is blocked from handing back a task until
the root answers with the next one, and the root answers only between its own tasks. If the batch
stepped in the main thread, a rank would sit idle for that whole wait. Here ``work(task)`` only
queues the chunk's structures and returns once the queue is down to a look-ahead of about one
chunk, so the rank asks for more work while its batch is still full and its queue still holds a
chunk: the wait for the root is hidden behind relaxation. Finished structures are committed to the
rank's shard every ``commit_every`` results (and at the end). Only the main thread calls MPI.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable, Optional, Sequence

from .runner import BatchRelaxer, RelaxResult


class RelaxWorker:
    """Runs a :class:`BatchRelaxer` in a background thread fed through :meth:`work`.

    Args:
        relaxer: the engine (its model is used only by the background thread).
        commit: called (from the background thread) with lists of finished results, at least every
            ``commit_every`` results; must make them durable (e.g. ``ShardWriter.append``).
        commit_every: results per commit.
        lookahead: structures kept queued beyond the batch before :meth:`work` returns.
    """

    def __init__(self, relaxer: BatchRelaxer, commit: Callable[[list], None], *, commit_every: int = 16,
                 lookahead: int = 16):
        self.relaxer = relaxer
        self.commit = commit
        self.commit_every = max(int(commit_every), 1)
        self.lookahead = max(int(lookahead), 0)
        self._cv = threading.Condition()
        self._closing = False   # no more input: drain and stop
        self._abort = False     # stop after the current step without draining
        self._error: Optional[BaseException] = None
        self._new: list = []    # finished since the last report (counted, not kept)
        self._pending: list[RelaxResult] = []
        self.statuses: Counter = Counter()
        self.steps = 0
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._loop, name="relax-batch", daemon=True)
        self._thread.start()

    # -- background thread ------------------------------------------------------------------------
    def _loop(self):
        try:
            while True:
                with self._cv:
                    while not self._abort and not self._closing and self.relaxer.n_active == 0 \
                            and self.relaxer.n_queued == 0:
                        self._cv.wait()
                    if self._abort or (self._closing and self.relaxer.idle):
                        break
                t0 = time.perf_counter()
                with self._cv:
                    self.relaxer.fill()
                    self._cv.notify_all()
                results = self.relaxer.step()
                self.busy_s += time.perf_counter() - t0
                if results:
                    self._pending.extend(results)
                    if len(self._pending) >= self.commit_every:
                        self._flush()
                    with self._cv:
                        self._new.extend(r.status for r in results)
                        self._cv.notify_all()
            if not self._abort:
                self._flush()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            with self._cv:
                self._error = error
                self._cv.notify_all()

    def _flush(self):
        if self._pending:
            batch, self._pending = self._pending, []
            self.commit(batch)
            self.statuses.update(r.status for r in batch)
            self.steps += sum(r.steps for r in batch)

    def _check(self):
        if self._error is not None:
            raise self._error

    # -- main thread ------------------------------------------------------------------------------
    def work(self, structures: Sequence) -> dict:
        """Queue ``structures``; return once the queue is down to the look-ahead, with a summary
        of the structures finished since the previous call: {"finished": n, "statuses": {...}}."""
        with self._cv:
            self._check()
            self.relaxer.submit(structures)
            self._cv.notify_all()
            while self.relaxer.n_queued > self.lookahead and self._error is None:
                self._cv.wait(timeout=1.0)
            self._check()
            new, self._new = self._new, []
        return {"finished": len(new), "statuses": dict(Counter(new))}

    def finish(self, drain: bool = True) -> None:
        """Stop: with ``drain``, relax everything queued and in the batch first and commit it;
        otherwise stop after the current step (uncommitted structures are redone on restart)."""
        with self._cv:
            if drain:
                self._closing = True
            else:
                self._abort = True
            self._cv.notify_all()
        while self._thread.is_alive():
            self._thread.join(timeout=1.0)
        self._check()
