"""Logging for every rank: time and rank in each line, quiet on non-root ranks unless asked."""

from __future__ import annotations

import logging
import sys


class _RankFormatter(logging.Formatter):
    def __init__(self, rank: int, size: int):
        width = len(str(max(size - 1, 0)))
        prefix = f"[{rank:>{width}}/{size}] " if size > 1 else ""
        super().__init__(f"%(asctime)s {prefix}%(levelname).1s %(message)s", datefmt="%H:%M:%S")


def setup_logging(rank: int = 0, size: int = 1, *, verbose: bool = False, all_ranks: bool = False,
                  logfile: str | None = None) -> None:
    """Configure the ``acnn_mpi`` logger.

    The root rank logs INFO (DEBUG with ``verbose``); other ranks log only warnings and errors
    unless ``all_ranks`` is set. ``logfile`` (root only) receives the same lines.
    """
    logger = logging.getLogger("acnn_mpi")
    logger.handlers.clear()
    logger.propagate = False
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0 and not all_ranks:
        level = logging.WARNING
    logger.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RankFormatter(rank, size))
    logger.addHandler(handler)
    if logfile and rank == 0:
        file_handler = logging.FileHandler(logfile)
        file_handler.setFormatter(_RankFormatter(rank, size))
        logger.addHandler(file_handler)
