"""Eq. 16 and its schedule against numbers computed by hand."""

import math

import pytest
import torch

from acnn_mpi.config import TrainingSettings
from acnn_mpi.model.forces import PotentialOutput
from acnn_mpi.train.frames import Targets
from acnn_mpi.train.loss import Schedule, eq16_loss, loss_sum


def _two_structures():
    """Structure 0: 1 atom with stress; structure 1: 2 atoms without stress."""
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    output = PotentialOutput(
        energy=t([1.0, -2.0]),
        forces=t([[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, -0.3]]),
        stress=None,
        virial=t([[[1.0, 0, 0], [0, 0, 0], [0, 0, 0]], [[5.0, 0, 0], [0, 5, 0], [0, 0, 5]]]),
        atomic_energies=t([1.0, -1.0, -1.0]),
    )
    targets = Targets(
        energy=t([0.5, -2.6]),
        forces=t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        virial=t([[[0.0, 0, 0], [0, 2, 0], [0, 0, 0]], [[0.0, 0, 0], [0, 0, 0], [0, 0, 0]]]),
        has_forces=torch.tensor([True, True]),
        has_virial=torch.tensor([True, False]),
        n_atoms=t([1.0, 2.0]),
        system_idx=torch.tensor([0, 1, 1]),
    )
    return output, targets


def test_eq16_by_hand_and_virial_skipped_without_stress():
    output, targets = _two_structures()
    p_e, p_f, p_w = 0.1, 10.0, 0.5
    # structure 0: ΔE = 0.5, N = 1; ‖ΔF‖² = 0.01; ‖ΔW‖² = 1 + 4 = 5
    s0 = p_e * 0.25 / 1 + p_f * 0.01 / 3 + p_w * 5.0 / 3
    # structure 1: ΔE = 0.6, N = 2; ‖ΔF‖² = 0.04 + 0.09; no stress label: no virial term
    s1 = p_e * 0.36 / 2 + p_f * 0.13 / 6
    expected = (s0 + s1) / 2
    assert float(eq16_loss(output, targets, p_e, p_f, p_w)) == pytest.approx(expected, rel=1e-14)
    parts = loss_sum(output, targets, p_e, p_f, p_w)
    assert parts.energy == pytest.approx(0.25 + 0.18)
    assert parts.forces == pytest.approx(0.01 / 3 + 0.13 / 6)
    assert parts.virial == pytest.approx(5.0 / 3)


def test_per_atom_energy_loss_is_the_squared_per_atom_error():
    output, targets = _two_structures()
    p_e, p_f, p_w = 0.1, 10.0, 0.5
    # (ΔE/N)²: structure 0 0.5² = 0.25, structure 1 (0.6/2)² = 0.09; forces and virial unchanged
    parts = loss_sum(output, targets, p_e, p_f, p_w, energy_per_atom=True)
    assert parts.energy == pytest.approx(0.25 + 0.09, rel=1e-14)
    assert parts.forces == pytest.approx(0.01 / 3 + 0.13 / 6)
    s0 = p_e * 0.25 + p_f * 0.01 / 3 + p_w * 5.0 / 3
    s1 = p_e * 0.09 + p_f * 0.13 / 6
    loss = eq16_loss(output, targets, p_e, p_f, p_w, energy_per_atom=True)
    assert float(loss) == pytest.approx((s0 + s1) / 2, rel=1e-14)
    assert TrainingSettings().energy_loss == "per_structure"


def test_schedule_staircase_and_force_prefactor():
    training = TrainingSettings(learning_rate=1e-3, lr_decay=0.5, decay_steps=100,
                                p_force_start=10.0, p_force_end=0.1, p_energy=0.2, p_virial=0.3)
    schedule = Schedule.from_settings(training)
    assert schedule.lr(0) == 1e-3 and schedule.lr(99) == 1e-3
    assert schedule.lr(100) == pytest.approx(5e-4) and schedule.lr(250) == pytest.approx(2.5e-4)
    assert schedule.prefactors(0) == (0.2, 10.0, 0.3)
    assert schedule.prefactors(200)[1] == pytest.approx(0.1 + 9.9 * 0.25)
    assert schedule.prefactors(10 ** 6)[1] == pytest.approx(0.1)
    # the paper's numbers: ×0.97 per 10⁴ steps, 10⁵ steps -> lr₀·0.737, p_f ≈ 7.4
    paper = Schedule.from_settings(TrainingSettings())
    assert paper.lr(100_000) == pytest.approx(1e-3 * 0.97 ** 10)
    assert paper.prefactors(100_000)[1] == pytest.approx(0.1 + 9.9 * 0.97 ** 10)
    smooth = Schedule(**{**schedule.state_dict(), "staircase": False})
    assert smooth.lr(50) == pytest.approx(1e-3 * math.sqrt(0.5))


def test_float32_model_output_with_float64_totals_gives_the_float64_loss():
    """A float32 ACNN returns float64 totals (DFT-sized references) with float32 forces and virials:
    the loss takes the mix and equals the all-float64 one (to float32 rounding of the forces)."""
    output, targets = _two_structures()
    p_e, p_f, p_w = 0.1, 10.0, 0.5
    expected = float(eq16_loss(output, targets, p_e, p_f, p_w))
    mixed = PotentialOutput(energy=output.energy, forces=output.forces.float(), stress=None,
                            virial=output.virial.float(), atomic_energies=output.atomic_energies)
    targets32 = Targets(energy=targets.energy, forces=targets.forces.float(),
                        virial=targets.virial.float(), has_forces=targets.has_forces,
                        has_virial=targets.has_virial, n_atoms=targets.n_atoms.float(),
                        system_idx=targets.system_idx, weight=torch.ones(2))
    loss = eq16_loss(mixed, targets32, p_e, p_f, p_w)
    assert loss.dtype == torch.float64
    assert float(loss) == pytest.approx(expected, rel=1e-6)
