"""Deterministic train/validation splits that stay put as a data set grows.

Each frame index i is hashed with the seed to a number u_i in [0, 1) (the i-th output of SplitMix64 seeded by the seed); frame i is in
the validation set when u_i < valid_fraction. The assignment of a frame depends only on (seed, i),
so appending frames to a store never moves an existing frame between the sets: a model validated
in one iteration of a campaign is never trained on its own validation frames in the next one.
The validation share is valid_fraction on average (not exactly).
"""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def split_uniforms(n: int, seed: int) -> np.ndarray:
    """(n,) numbers in [0, 1), one per frame index, fixed by ``seed``."""
    # the i-th output of a SplitMix64 generator whose state starts at a hash of the seed
    state = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + _GAMMA)[0]
    with np.errstate(over="ignore"):
        mixed = _mix64(state + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * _GAMMA)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_indices(n: int, valid_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) frame indices, ascending int64 arrays that partition range(n).

    Args:
        n: number of frames.
        valid_fraction: expected share of validation frames, 0 <= f < 1.
        seed: any int; the same (seed, index) always lands in the same set.

    With 0 < f and n >= 2, at least one frame is in each set (the frame with the lowest,
    respectively highest, hash moves), so tiny sets still validate and train.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    u = split_uniforms(n, seed)
    valid = u < valid_fraction
    if valid_fraction > 0 and n >= 2:
        if not valid.any():
            valid[np.argmin(u)] = True
        if valid.all():
            valid[np.argmax(u)] = False
    return np.flatnonzero(~valid).astype(np.int64), np.flatnonzero(valid).astype(np.int64)
