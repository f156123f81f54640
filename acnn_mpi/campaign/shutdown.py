"""Graceful shutdown before the job ends: a scheduler's warning signal or the job's walltime.

Two triggers, one stop path. Every rank installs a handler for SIGTERM/SIGUSR1 (Slurm's
``--signal``, PBS's SIGTERM); and :func:`install` reads the batch job's end time (Slurm, PBS; see
:mod:`acnn_mpi.parallel.walltime`) so that :func:`requested` turns true ``margin_s`` before it,
with nothing set up by the user. The root polls :func:`requested` between tasks, stops dealing out
new work, collects what is in flight, saves a consistent state and exits (code 3), so the next job
resumes.
"""

from __future__ import annotations

import logging
import signal
import time

log = logging.getLogger(__name__)

_requested_at: float | None = None
_signal_name: str | None = None
_job_end_s: float | None = None   # the batch job's end, Unix epoch seconds
_margin_s = 0.0                    # stop this long before it, s


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    _request(signal.Signals(signum).name + " received")


def _request(reason: str) -> None:
    global _requested_at, _signal_name
    if _requested_at is None:
        _requested_at = time.monotonic()
        _signal_name = reason
        log.warning("%s: finishing the work in flight, then saving and exiting", reason)


def _default_margin_s() -> float:
    from ..config import ParallelSettings

    return float(ParallelSettings.model_fields["walltime_margin_s"].default)


def install(signals=(signal.SIGTERM, signal.SIGUSR1), *, margin_s: float | None = None,
            comm=None) -> None:
    """Install the signal handler and arm the walltime stop (every rank, from the main thread).

    Args:
        signals: signals that request a stop.
        margin_s: stop this many seconds before the job's end (default:
            ``parallel.walltime_margin_s``); 0 disables the walltime stop.
        comm: the job's communicator (default: the world); the root reads the end time and
            gives it to every rank, so that the scheduler is asked once. Collective.
    """
    global _job_end_s, _margin_s
    for sig in signals:
        signal.signal(sig, _handler)
    margin_s = _default_margin_s() if margin_s is None else float(margin_s)
    if comm is None:
        from ..parallel.comm import get_world

        comm = get_world()
    end = None
    if comm.is_root and margin_s > 0:
        from ..parallel.walltime import job_end

        end = job_end()
    end = comm.bcast(end)
    _job_end_s, _margin_s = (None, 0.0) if end is None else (end.end_s, margin_s)
    if end is not None and comm.is_root:
        left = end.end_s - time.time()
        log.info("job ends in %.0f s (%s): stopping cleanly %.0f s before it", left, end.source,
                 margin_s)


def requested() -> bool:
    """True once a shutdown signal has arrived on this rank or the walltime margin is reached."""
    if _requested_at is None and _job_end_s is not None:
        left = _job_end_s - time.time()
        if left <= _margin_s:
            _request(f"the job ends in {left:.0f} s (walltime margin {_margin_s:.0f} s)")
    return _requested_at is not None


def seconds_since_request() -> float:
    return 0.0 if _requested_at is None else time.monotonic() - _requested_at


def reset() -> None:
    """Forget a received signal and the job's end time (tests)."""
    global _requested_at, _signal_name, _job_end_s
    _requested_at = None
    _signal_name = None
    _job_end_s = None
