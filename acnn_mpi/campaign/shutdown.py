"""Graceful shutdown on a scheduler's warning signal (SIGTERM, SIGUSR1; Slurm's --signal).

Every rank installs the handler; the root polls :func:`requested` between tasks, stops dealing out
new work, collects what is in flight, saves a consistent state and exits, so the next job resumes.
"""

from __future__ import annotations

import logging
import signal
import time

log = logging.getLogger(__name__)

_requested_at: float | None = None
_signal_name: str | None = None


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    global _requested_at, _signal_name
    if _requested_at is None:
        _requested_at = time.monotonic()
        _signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing the work in flight, then saving and exiting", _signal_name)


def install(signals=(signal.SIGTERM, signal.SIGUSR1)) -> None:
    """Install the handler for ``signals`` (call once per rank, from the main thread)."""
    for sig in signals:
        signal.signal(sig, _handler)


def requested() -> bool:
    """True once a shutdown signal has arrived on this rank."""
    return _requested_at is not None


def seconds_since_request() -> float:
    return 0.0 if _requested_at is None else time.monotonic() - _requested_at


def reset() -> None:
    """Forget a received signal (tests)."""
    global _requested_at, _signal_name
    _requested_at = None
    _signal_name = None
