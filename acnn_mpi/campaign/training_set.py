"""Which labels the campaign trains on, in which order, and which it holds out.

Labels are appended as calculations finish, in an order that differs between runs; sorting by
structure id and holding out by a seeded hash of the id makes training independent of that order
(and of a kill and resume), and keeps a frame in the same set as the data set grows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def usable_labels(store, max_force: float) -> np.ndarray:
    """(F,) bool: frames of ``store`` whose largest force component is at most ``max_force`` eV/Å.

    A structure the model collapsed (atoms far inside each other) gets labels of hundreds of eV/Å
    from the labeller; at full weight one such frame dominates the loss of Eq. 16 and wrecks the
    fit. Such frames are never held out for validation (nor used in the learning curve); they are
    trained on with a bounded weight (``collapsed_labels: weight``) or not at all (``drop``).
    """
    usable = np.ones(len(store), dtype=bool)
    for start in range(0, len(store), 4096):
        arrays = store.read_arrays(np.arange(start, min(start + 4096, len(store))))
        offsets = arrays.offsets
        for row in range(len(arrays)):
            forces = arrays.forces[offsets[row]:offsets[row + 1]]
            usable[start + row] = len(forces) == 0 or np.abs(forces).max() <= max_force
    if not usable.all():
        log.info("%d label(s) with forces above %.0f eV/Å (collapsed cells)",
                 int((~usable).sum()), max_force)
    return usable


def training_split(labels_path: Path, training) -> tuple[np.ndarray, np.ndarray]:
    """Store indices to train on in (iteration, structure id) order, and the held-out ones.

    ``training`` is the campaign's TrainingSettings (seed, validation_fraction, max_label_force,
    collapsed_labels): collapsed cells are kept (train_model down-weights them) unless
    ``collapsed_labels`` is 'drop', and are never held out.
    """
    from ..data.store import FrameStore

    with FrameStore(labels_path, mode="r") as store:
        ids = store.column("structure_id")
        iterations = store.column("iteration")
        usable = usable_labels(store, training.max_label_force)
    order = np.lexsort((ids, iterations))
    if training.collapsed_labels == "drop":
        order = order[usable[order]]
    draws = np.array([np.random.default_rng([training.seed, int(i) & 0x7FFFFFFFFFFFFFFF]).random()
                      for i in ids])
    held_out = np.flatnonzero((draws < training.validation_fraction) & usable)
    return order, held_out
