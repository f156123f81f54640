"""Shared by the subcommands: argument types (finite numbers within bounds) and error handling
for commands that only the root works on.

argparse's ``type=float`` takes "nan" and "inf", and ``type=int`` takes any sign; these types
refuse them at parse time, so a bad flag is one line before any work starts.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def number(kind: type = float, low: Optional[float] = None, *, above: bool = False,
           high: Optional[float] = None) -> Callable[[str], float]:
    """``type=`` for a flag: a finite ``kind`` (float or int) ≥ ``low`` (> ``low`` when
    ``above``) and ≤ ``high``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a number such as 1.5")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if above else '≥'} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be ≤ {high:g}")
        return value

    parse.__name__ = kind.__name__
    return parse


#: a finite float
finite_float = number(float)
#: a float > 0
positive_float = number(float, 0, above=True)
#: a float ≥ 0
non_negative_float = number(float, 0)
#: an integer ≥ 1
positive_int = number(int, 1)
#: an integer ≥ 0
non_negative_int = number(int, 0)


def root_only(comm, work: Callable[[], int]) -> int:
    """Run a command that only the root works on (the other ranks return at once): its errors
    need no MPI_Abort, as no rank waits for the root, so they are marked as said once by the root
    (``collective``) and the job ends with the root's exit code."""
    from ..errors import UserError

    try:
        return work()
    except UserError as error:
        error.collective = True
        raise
