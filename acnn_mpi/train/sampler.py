"""The order in which training structures are visited: a reshuffle per epoch, resumable exactly.

The permutation of epoch k is a pure function of (seed, k), so the whole data-order state is three
integers: ``seed``, ``epoch`` and ``cursor`` (structures of the epoch already handed out). A
minibatch that runs past the end of an epoch is completed from the next one.
"""

from __future__ import annotations

import numpy as np


class EpochSampler:
    """Hands out positions 0..n-1, each once per epoch, in a seeded random order."""

    def __init__(self, n: int, seed: int = 0, epoch: int = 0, cursor: int = 0):
        if n < 1:
            raise ValueError("the sampler needs at least one structure")
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.cursor = int(cursor)
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation used in ``epoch``."""
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._order_epoch = epoch
        return self._order

    def next(self, k: int) -> np.ndarray:
        """The next ``min(k, n)`` positions (one that spans two epochs may repeat a structure)."""
        k = min(int(k), self.n)
        parts = []
        while k > 0:
            take = self.order(self.epoch)[self.cursor:self.cursor + k]
            parts.append(take)
            k -= len(take)
            self.cursor += len(take)
            if self.cursor == self.n:
                self.epoch += 1
                self.cursor = 0
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def state_dict(self) -> dict:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n:
            raise ValueError(f"the checkpoint was trained on {state['n']} structures, now {self.n}")
        self.seed, self.epoch, self.cursor = int(state["seed"]), int(state["epoch"]), int(state["cursor"])
