"""Training an ACNN on EMT-labelled Cu/Au cells: it learns, resumes exactly, refines, and rejects bad
frames."""

import json

import numpy as np
import pytest
import torch

from acnn_mpi.errors import UserError
from acnn_mpi.model.potential import ACNN
from acnn_mpi.train import train_model
from acnn_mpi.train import checkpoint as checkpoint_module
from acnn_mpi.train.checkpoint import load_checkpoint, save_checkpoint
from acnn_mpi.train.frames import load_frames
from acnn_mpi.train.metrics import evaluate_errors
from acnn_mpi.train.models import perturb_parameters
from acnn_mpi.train.reference import fit_reference_energies, per_atom_baseline_rmse
from tests.train.helpers import emt_frames, small_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """200 steps on 60 EMT frames, about a quarter held out."""
    frames = emt_frames(60, seed=0)
    out = tmp_path_factory.mktemp("trained")
    result = train_model(small_config(), frames, out)
    return frames, out, result


def test_loss_falls_and_model_beats_the_composition_baseline(trained):
    frames, out, result = trained
    assert result.steps == 200 and result.n_train + result.n_valid == 60 and result.n_valid >= 10
    log = json.loads(result.metrics_json.read_text())
    losses = [r["loss"] for r in log["records"]]
    assert losses[-1] < losses[0] / 10, losses
    # baseline: per-element reference energies (least squares on the training split), zero forces
    checkpoint = load_checkpoint(result.checkpoint_path)
    all_frames = load_frames(frames)
    train = [all_frames[i] for i in checkpoint["data"]["train_ids"]]
    valid = [all_frames[i] for i in checkpoint["data"]["valid_ids"]]
    baseline_e = 1000 * per_atom_baseline_rmse(valid, fit_reference_energies(train, [29, 79]))
    baseline_f = 1000 * np.sqrt(np.mean(np.concatenate([f.forces for f in valid]) ** 2))
    errors = result.metrics["valid"]
    assert errors["energy_rmse"] < 0.4 * baseline_e, (errors, baseline_e)
    assert errors["force_rmse"] < 0.25 * baseline_f, (errors, baseline_f)
    assert errors["stress_rmse"] is not None and errors["n_stress_frames"] == result.n_valid
    # the saved model reproduces the reported validation errors
    model = ACNN.load(result.model_path)
    again = evaluate_errors(model, [frames[i] for i in checkpoint["data"]["valid_ids"]])
    assert again["energy_rmse"] == pytest.approx(errors["energy_rmse"], rel=1e-9)
    # logs: a CSV row per log point with the validation columns on validation steps
    rows = result.metrics_csv.read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,p_force,loss") and len(rows) == 1 + 8
    assert log["final"]["valid"]["energy_rmse"] == pytest.approx(errors["energy_rmse"])


def test_resume_is_bit_for_bit(tmp_path):
    frames = emt_frames(12, seed=2)
    config = small_config(steps=6, batch_size=3, log_every=2, validate_every=3)
    straight = train_model(config, frames, tmp_path / "straight")
    half = train_model(config, frames, tmp_path / "halves", steps=3)
    assert half.steps == 3
    resumed = train_model(config, frames, tmp_path / "halves", steps=6, resume=True)
    assert resumed.steps == 6
    a = ACNN.load(straight.model_path).state_dict()
    b = ACNN.load(resumed.model_path).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in json.loads(resumed.metrics_json.read_text())["records"]]
    assert steps == [2, 3, 4, 6]  # each step logged once across the two runs


def test_refine_perturbs_then_trains(trained, tmp_path):
    _, out, _ = trained
    original = ACNN.load(out / "model.pt")
    # the perturbation: noise of 5 % of each tensor's spread
    model = ACNN.load(out / "model.pt")
    perturb_parameters(model, 0.05, torch.Generator().manual_seed(1))
    before, after = dict(original.named_parameters()), dict(model.named_parameters())
    weight = "fitting.hidden.0.weight"
    relative = float((after[weight] - before[weight]).detach().std() / before[weight].detach().std())
    assert relative == pytest.approx(0.05, rel=0.1)
    # refine on new frames: step 0 is the perturbed model, reference energies kept, then it trains
    new = emt_frames(16, seed=7)
    config = small_config(refine_perturbation=0.05, learning_rate=0.002)
    start = train_model(config, new, tmp_path / "refine0", refine_from=out / "model.pt", steps=0)
    perturbed = ACNN.load(start.model_path)
    assert torch.equal(perturbed.reference_energies, original.reference_energies)
    assert not torch.equal(perturbed.fitting.hidden[0].weight, original.fitting.hidden[0].weight)
    refined = train_model(config, new, tmp_path / "refine", refine_from=out / "model.pt", steps=30)
    assert refined.metrics["train"]["force_rmse"] < 0.8 * start.metrics["train"]["force_rmse"]
    assert load_checkpoint(refined.checkpoint_path)["data"]["refined_from"].endswith("model.pt")


def test_a_kill_while_writing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def dies_halfway(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path, entries=("step",))["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bad_frames_are_reported_by_index_and_skipped(tmp_path, caplog):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = emt_frames(6, seed=4)
    nan = frames[1].copy()
    nan.calc = SinglePointCalculator(nan, energy=float("nan"), forces=frames[1].get_forces())
    silver = frames[2].copy()
    silver.set_chemical_symbols(["Ag"] * len(silver))
    silver.calc = SinglePointCalculator(silver, **frames[2].calc.results)
    close = Atoms("Cu2", positions=[[0, 0, 0], [0.2, 0, 0]], cell=[4, 4, 4], pbc=True)
    close.calc = SinglePointCalculator(close, energy=1.0, forces=np.zeros((2, 3)))
    data = [frames[0], nan, silver, close, *frames[3:]]
    with caplog.at_level("WARNING"):
        result = train_model(small_config(steps=1), data, tmp_path / "out")
    assert result.n_train + result.n_valid == 4
    text = "\n".join(result.rejected)
    assert "frame 1 of" in text and "energy is NaN" in text
    assert "frame 2 of" in text and "element(s) not allowed: Ag" in text
    assert "frame 3 of" in text and "0.200 Å apart" in text
    with pytest.raises(UserError, match="no usable training frames"):
        train_model(small_config(steps=1), [nan, silver], tmp_path / "none")


def test_trains_from_a_frame_store_with_a_split_that_stays_put(tmp_path):
    from acnn_mpi.data.store import FrameStore
    from acnn_mpi.train.api import split_by_id

    path = tmp_path / "labels.h5"
    with FrameStore(path, "w") as store:
        store.append(emt_frames(10, seed=6), source="test")
    result = train_model(small_config(steps=2), path, tmp_path / "out", indices=range(8))
    assert result.n_train + result.n_valid == 8 and result.model_path.is_file()
    # a frame keeps its side of the split when the data set grows
    train_40, valid_40 = split_by_id(range(40), 0.25, seed=0)
    train_80, valid_80 = split_by_id(range(80), 0.25, seed=0)
    assert set(valid_40) == set(v for v in valid_80 if v < 40) and len(valid_40) >= 1


def test_gradient_norms_are_logged_and_clipping_bounds_each_step(tmp_path):
    """The log's grad_norm is the unclipped norm; with grad_clip_norm far below it every step is
    clipped, so Adam sees gradients of one fixed norm and the weights move differently."""
    frames = emt_frames(12, seed=4)
    settings = dict(steps=6, batch_size=3, log_every=1, validate_every=3)
    free = train_model(small_config(**settings), frames, tmp_path / "free")
    clipped = train_model(small_config(**settings, grad_clip_norm=1e-3), frames, tmp_path / "clipped")
    norms = [r["grad_norm"] for r in json.loads(free.metrics_json.read_text())["records"]]
    clipped_norms = [r["grad_norm"] for r in json.loads(clipped.metrics_json.read_text())["records"]]
    assert all(n is not None and n > 1e-2 for n in norms), norms
    assert clipped_norms[0] == pytest.approx(norms[0], rel=1e-9)  # step 1: same weights, same norm
    a, b = ACNN.load(free.model_path), ACNN.load(clipped.model_path)
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-6
    assert free.metrics_csv.read_text().splitlines()[0].split(",")[10] == "grad_norm"
