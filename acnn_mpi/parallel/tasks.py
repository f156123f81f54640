"""Dynamic distribution of tasks over ranks: the root deals, every rank asks for more when done.

Relaxations and DFT calculations differ a lot in length, so static slicing leaves ranks idle; here
a rank gets a new task as soon as it hands back the previous result. Tasks and results are small
picklable objects (ids, counts, timings); bulky output is written by the worker itself.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence, TypeVar

from .comm import Comm

Task = TypeVar("Task")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

_TAG_REQUEST = 11  # worker -> root: (task index or -1, result)
_TAG_ASSIGN = 12   # root -> worker: (task index, task) or None to stop
#: seconds between polls while waiting for a message. A blocking MPI receive busy-spins in MPICH
#: and takes the core from work running in other threads of the rank (or from other ranks on an
#: oversubscribed node); a millisecond of latency per task is nothing next to a relaxation.
_POLL_INTERVAL = 0.001


#: the sleep between polls doubles up to this while nothing comes (a rank waiting minutes for the
#: root, or the root for relaxing ranks, then costs ~0.1 % of a core instead of ~3 %)
_POLL_MAX = 0.016


def _wait(mpi, source, tag, status=None) -> None:
    """Return once a message from ``source`` with ``tag`` is waiting, sleeping between polls
    (1 ms, doubling up to 16 ms while none comes)."""
    pause = _POLL_INTERVAL
    while not mpi.Iprobe(source=source, tag=tag, status=status):
        time.sleep(pause)
        pause = min(2 * pause, _POLL_MAX)


def run_dynamic(
    comm: Comm,
    tasks: Optional[Sequence[Task]],
    work: Callable[[Task], Result],
    on_result: Optional[Callable[[Task, Result, int], None]] = None,
    *,
    root_works: Optional[bool] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> list[tuple[Task, Result]]:
    """Run ``work(task)`` for every task, spread dynamically over the ranks of ``comm``.

    Args:
        comm: the communicator; every rank of it must call this function.
        tasks: the task list, read on the root only (other ranks may pass None).
        work: called on the rank that receives a task; returns a small picklable result.
        on_result: called on the root as ``on_result(task, result, rank)`` for each finished task.
        root_works: whether the root also runs tasks between dispatches (default: when the job has
            at most 4 ranks, where a dispatch-only root would waste a large share of the cores); it
            then takes no more tasks than the average other rank has been dealt.
        should_stop: polled on the root; once true, no new task is handed out (for a graceful
            shutdown on a scheduler's signal) and the tasks in flight are still collected.

    Returns:
        On the root, ``(task, result)`` for every finished task in completion order; ``[]`` elsewhere.
    """
    if comm.size == 1 or comm.mpi is None:
        done = []
        for task in tasks or []:
            if should_stop is not None and should_stop():
                break
            result = work(task)
            if on_result is not None:
                on_result(task, result, 0)
            done.append((task, result))
        return done
    if comm.is_root:
        if root_works is None:
            root_works = comm.size <= 4
        return _deal(comm, list(tasks or []), work, on_result, root_works, should_stop)
    _serve(comm, work)
    return []


def _deal(comm, tasks, work, on_result, root_works, should_stop):
    from mpi4py import MPI

    mpi = comm.mpi
    done: list = []
    next_index = 0
    active_workers = comm.size - 1
    dealt = taken = 0  # tasks sent to the other ranks, and run by the root
    status = MPI.Status()

    def stopping() -> bool:
        return should_stop is not None and should_stop()

    def root_takes() -> bool:
        # the root's fair share: never ahead of the average other rank while they still ask (a
        # root whose work() returns at once, e.g. into a batch with room, would take every task)
        return root_works and next_index < len(tasks) and not stopping() and (
            active_workers == 0 or taken * (comm.size - 1) <= dealt)

    def handle(message, source):
        nonlocal next_index, active_workers, dealt
        index, result = message
        if index >= 0:
            if on_result is not None:
                on_result(tasks[index], result, source)
            done.append((tasks[index], result))
        if next_index < len(tasks) and not stopping():
            mpi.send((next_index, tasks[next_index]), dest=source, tag=_TAG_ASSIGN)
            next_index += 1
            dealt += 1
        else:
            mpi.send(None, dest=source, tag=_TAG_ASSIGN)
            active_workers -= 1

    while active_workers > 0 or root_takes():
        # Serve every waiting worker first so nobody idles while the root computes.
        while active_workers > 0 and mpi.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_REQUEST, status=status):
            source = status.Get_source()
            handle(mpi.recv(source=source, tag=_TAG_REQUEST), source)
        if root_takes():
            index = next_index
            next_index += 1
            taken += 1
            result = work(tasks[index])
            if on_result is not None:
                on_result(tasks[index], result, 0)
            done.append((tasks[index], result))
        elif active_workers > 0:
            _wait(mpi, MPI.ANY_SOURCE, _TAG_REQUEST, status)
            source = status.Get_source()
            handle(mpi.recv(source=source, tag=_TAG_REQUEST), source)
    return done


def _serve(comm, work):
    mpi = comm.mpi
    message = (-1, None)
    while True:
        mpi.send(message, dest=0, tag=_TAG_REQUEST)
        _wait(mpi, 0, _TAG_ASSIGN)
        assignment = mpi.recv(source=0, tag=_TAG_ASSIGN)
        if assignment is None:
            return
        index, task = assignment
        message = (index, work(task))
