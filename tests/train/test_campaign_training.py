"""Training across a campaign: the schedule clock runs on over refinements, the budget follows the
data, the best validated model is kept, and collapsed cells train with a bounded weight."""

import json

import numpy as np
import pytest
import torch

from acnn_mpi.config import TrainingSettings
from acnn_mpi.model.potential import ACNN
from acnn_mpi.train import train_model
from acnn_mpi.train.api import schedule_clock, training_steps
from acnn_mpi.train.checkpoint import load_checkpoint
from acnn_mpi.train.frames import Frame, collapsed_weights
from acnn_mpi.train.loss import Schedule, loss_sum
from acnn_mpi.train.metrics import evaluate_errors
from acnn_mpi.train.trainer import validation_score
from tests.train.helpers import emt_frames, small_config


def records(result):
    return json.loads(result.metrics_json.read_text())["records"]


def test_schedule_continues_over_refinements(tmp_path):
    """Three trainings of 20 steps on one clock: p_f falls 10 -> 1.14 as in one 60-step training."""
    config = small_config(steps=20, decay_steps=10, lr_decay=0.5, log_every=10, validate_every=10)
    schedule = Schedule.from_settings(config.training)
    previous, outs = None, []
    for k in range(3):
        out = tmp_path / f"train_{k}"
        train_model(config, emt_frames(12, seed=k), out, continue_schedule_from=previous,
                    refine_from=previous / "model.pt" if previous else None)
        assert load_checkpoint(out / "checkpoint.pt")["clock_start"] == 20 * k
        outs.append(out)
        previous = out
    assert schedule_clock(outs[-1]) == 60 and schedule_clock(None) == 0
    last = json.loads((outs[-1] / "metrics.json").read_text())["records"][-1]
    assert last["step"] == 20
    assert last["lr"] == pytest.approx(0.01 * 0.5 ** 6)  # clock 60, not 20
    assert last["p_force"] == pytest.approx(schedule.prefactors(60)[1]) == pytest.approx(
        1.0 + 9.0 * 0.5 ** 6)
    # without the clock each refinement would end where the first did
    first = json.loads((outs[0] / "metrics.json").read_text())["records"][-1]
    assert first["p_force"] == pytest.approx(1.0 + 9.0 * 0.25) and first["p_force"] > 2.5 * last["p_force"]


def test_the_budget_follows_the_data():
    training = TrainingSettings(epochs=200, batch_size=4, steps=100_000, min_steps=1000)
    assert training_steps(training, 100) == 5000  # 200 epochs of 25 minibatches
    assert training_steps(training, 10_000) == 100_000  # capped at steps (40 epochs)
    assert training_steps(training, 10) == 1000  # at least min_steps
    assert training_steps(TrainingSettings(), 10) == training_steps(TrainingSettings(), 10**5) == 100_000


def test_epochs_budget_in_a_run(tmp_path):
    config = small_config(epochs=3, steps=1000, batch_size=3, validation_fraction=0.25)
    result = train_model(config, emt_frames(12, seed=3), tmp_path)
    assert result.steps == -(-3 * result.n_train // 3)


def test_best_validated_model_is_written(tmp_path):
    """A high learning rate makes the held-out error jump about; model.pt is the best point."""
    frames = emt_frames(16, seed=5)
    config = small_config(steps=60, learning_rate=0.05, lr_decay=1.0, validate_every=5, log_every=5)
    result = train_model(config, frames, tmp_path / "best")
    history = [r for r in records(result) if r.get("valid_energy_rmse") is not None]
    scores = [validation_score({"energy_rmse": r["valid_energy_rmse"],
                                "force_rmse": r["valid_force_rmse"]}, config.training) for r in history]
    best = int(np.argmin(scores))
    checkpoint = load_checkpoint(result.checkpoint_path)
    assert checkpoint["best"]["step"] == history[best]["step"] < 60  # not the last step
    assert checkpoint["best"]["score"] == pytest.approx(scores[best], rel=1e-12)
    valid = [frames[i] for i in checkpoint["data"]["valid_ids"]]
    again = evaluate_errors(ACNN.load(result.model_path), valid)
    assert validation_score(again, config.training) == pytest.approx(scores[best], rel=1e-9)
    assert validation_score(result.metrics["valid"], config.training) == pytest.approx(scores[best])
    # keep_best off: the last parameters
    last = train_model(small_config(**{**config.training.model_dump(), "keep_best": False}),
                       frames, tmp_path / "last")
    again = evaluate_errors(ACNN.load(last.model_path), valid)
    assert validation_score(again, config.training) == pytest.approx(scores[-1], rel=1e-9)


def test_patience_stops_and_a_resume_stays_stopped(tmp_path):
    frames = emt_frames(16, seed=5)
    config = small_config(steps=400, learning_rate=0.05, lr_decay=1.0, validate_every=5,
                          log_every=5, patience=2)
    result = train_model(config, frames, tmp_path)
    checkpoint = load_checkpoint(result.checkpoint_path)
    assert checkpoint["finished_early"] and result.steps < 400
    assert checkpoint["since_best"] == 2 and result.steps == checkpoint["best"]["step"] + 10
    again = train_model(config, frames, tmp_path, resume=True)
    assert again.steps == result.steps
    a, b = ACNN.load(result.model_path).state_dict(), ACNN.load(again.model_path).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_collapsed_weight_bounds_the_loss():
    forces = [np.array([[0.5, -2.0, 0.0]]), np.array([[500.0, 0.0, -10.0]]), None]
    frames = [Frame(np.zeros((1, 3)), np.array([29]), np.eye(3) * 3, np.ones(3, bool), 0.0, f)
              for f in forces]
    weights = collapsed_weights(frames, 50.0)
    assert weights.tolist() == pytest.approx([1.0, (50 / 500) ** 2, 1.0])
    # in Eq. 16 the collapsed frame's terms are multiplied by its weight
    from acnn_mpi.model.forces import PotentialOutput
    from acnn_mpi.train.frames import Targets

    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    output = PotentialOutput(energy=t([1.0, 2.0]), forces=t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
                             stress=None, virial=None, atomic_energies=None)
    targets = Targets(energy=t([0.0, 0.0]), forces=t([[1.0, 0.0, 0.0], [500.0, 0.0, 0.0]]),
                      virial=torch.zeros(2, 3, 3, dtype=torch.float64),
                      has_forces=torch.tensor([True, True]), has_virial=torch.tensor([False, False]),
                      n_atoms=t([1.0, 1.0]), system_idx=torch.tensor([0, 1]), weight=t([1.0, 0.01]))
    parts = loss_sum(output, targets, 1.0, 1.0, 0.0)
    assert float(parts.total) == pytest.approx((1 + 1 / 3) + 0.01 * (4 + 500 ** 2 / 3))
