"""Least-squares per-element reference energies."""

import numpy as np
import pytest

from acnn_mpi.train.frames import Frame
from acnn_mpi.train.reference import fit_reference_energies, per_atom_baseline_rmse


def _frame(numbers, energy):
    n = len(numbers)
    return Frame(positions=np.zeros((n, 3)), numbers=np.array(numbers), cell=np.eye(3) * 10,
                 pbc=np.ones(3, bool), energy=energy)


def test_exact_on_a_linear_synthetic_set():
    rng = np.random.default_rng(3)
    truth = {12: -1.5, 20: -2.25, 1: -3.375}
    frames = []
    for _ in range(12):
        numbers = rng.choice([12, 20, 1], size=rng.integers(2, 9)).tolist()
        frames.append(_frame(numbers, sum(truth[z] for z in numbers)))
    fitted = fit_reference_energies(frames, [12, 20, 1, 8])
    for z, e in truth.items():
        assert fitted[z] == pytest.approx(e, abs=1e-12)
    assert fitted[8] == 0.0  # never seen: left at zero
    assert per_atom_baseline_rmse(frames, fitted) == pytest.approx(0.0, abs=1e-12)


def test_least_squares_with_noise_is_the_normal_equation_solution():
    frames = [_frame([1, 1], -1.0), _frame([1, 1, 1], -1.6), _frame([1], -0.45)]
    # min Σ (E_i − c_i e)²  ⇒  e = Σ c_i E_i / Σ c_i²
    expected = (2 * -1.0 + 3 * -1.6 + 1 * -0.45) / (4 + 9 + 1)
    assert fit_reference_energies(frames, [1])[1] == pytest.approx(expected, rel=1e-14)
