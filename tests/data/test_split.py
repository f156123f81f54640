"""split_indices: deterministic, a partition, close to the asked fraction, and stable as the data
set grows (no frame ever moves between training and validation)."""

import numpy as np
import pytest

from acnn_mpi.data.split import split_indices


def test_deterministic_partition():
    train, valid = split_indices(1000, 0.1, seed=3)
    again = split_indices(1000, 0.1, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(valid, again[1])
    assert train.dtype == np.int64 and np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0)
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(1000))
    other = split_indices(1000, 0.1, seed=4)[1]
    assert not np.array_equal(valid, other)


def test_fraction_on_average():
    for seed in range(5):
        n_valid = len(split_indices(20000, 0.2, seed)[1])
        assert abs(n_valid - 4000) < 4 * np.sqrt(20000 * 0.2 * 0.8)  # binomial, 4 sigma


def test_stable_when_frames_are_appended():
    train_small, valid_small = split_indices(500, 0.15, seed=11)
    train_big, valid_big = split_indices(800, 0.15, seed=11)
    assert np.array_equal(valid_big[valid_big < 500], valid_small)
    assert np.array_equal(train_big[train_big < 500], train_small)


def test_small_sets_get_both_parts_and_bad_fractions_fail():
    for n in range(2, 12):
        train, valid = split_indices(n, 0.01, seed=0)
        assert len(train) >= 1 and len(valid) >= 1
    train, valid = split_indices(5, 0.0, seed=0)
    assert len(valid) == 0 and len(train) == 5
    assert [len(p) for p in split_indices(1, 0.5, seed=0)] in ([1, 0], [0, 1])
    assert [len(p) for p in split_indices(0, 0.5, seed=0)] == [0, 0]
    with pytest.raises(ValueError, match="valid_fraction"):
        split_indices(10, 1.0, seed=0)
