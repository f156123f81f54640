"""Argument types shared by the subcommands: numbers that must be finite."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """``type=`` for a float flag: refuses NaN and ±inf (argparse's float takes them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a number such as 1.5")
    return value
