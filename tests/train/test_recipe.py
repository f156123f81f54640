"""Training-recipe options: cosine schedule (with warm restarts), energy-prefactor ramp, and the
moving average of the weights (EMA) that is validated and written."""

import math

import pytest
import torch

from acnn_mpi.config import TrainingSettings
from acnn_mpi.model.potential import ACNN
from acnn_mpi.train import train_model
from acnn_mpi.train.checkpoint import load_checkpoint
from acnn_mpi.train.ema import WeightAverage
from acnn_mpi.train.loss import Schedule
from acnn_mpi.train.metrics import evaluate_errors
from acnn_mpi.train.models import build_acnn, model_from_record
from tests.train.helpers import emt_frames, import_script, small_config


def test_cosine_schedule_end_values_and_restarts():
    training = TrainingSettings(lr_schedule="cosine", learning_rate=2e-3, lr_min_ratio=0.01,
                                p_force_start=30.0, p_force_end=1.0, p_energy=0.5, p_energy_end=5.0)
    s = Schedule.from_settings(training, total_steps=1000)
    assert s.lr(0) == pytest.approx(2e-3)
    assert s.lr(500) == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5))  # half way: the mean
    assert s.lr(999) == pytest.approx(2e-5, rel=1e-3)  # ends at lr_min = 0.01 lr₀
    assert s.lr(250) > s.lr(500) > s.lr(750)
    p_e, p_f, _ = s.prefactors(0)
    assert (p_e, p_f) == pytest.approx((0.5, 30.0))
    p_e, p_f, _ = s.prefactors(999)  # both follow lr/lr₀ towards their end values
    assert p_f == pytest.approx(1.0 + 29.0 * 0.01, rel=1e-3)
    assert p_e == pytest.approx(5.0 - 4.5 * 0.01, rel=1e-3)
    # two cycles: a warm restart half way; a refinement's cycle starts at its own clock origin
    restarts = Schedule.from_settings(training.model_copy(update={"lr_cycles": 2}), total_steps=1000)
    assert restarts.lr(500) == pytest.approx(2e-3) and restarts.lr(250) == pytest.approx(s.lr(500))
    refined = Schedule.from_settings(training, total_steps=1000, origin=7000)
    assert refined.lr(7000) == pytest.approx(2e-3) and refined.lr(7500) == pytest.approx(s.lr(500))
    # p_energy_end unset: p_e constant, as in the paper
    assert Schedule.from_settings(TrainingSettings(p_energy=0.1)).prefactors(10 ** 6)[0] == 0.1


def test_ema_of_constant_weights_is_those_weights_and_averages_a_sequence():
    model = torch.nn.Linear(3, 2).double()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = WeightAverage(model, decay=0.9)
    for _ in range(50):
        ema.update(model)
    for name, value in ema.shadow.items():
        assert torch.equal(value, start[name])
    # after the weights move by +1, n more updates: the average is the weighted old/new mix
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    decays = []
    for _ in range(20):
        decays.append(ema.current_decay())
        ema.update(model)
    assert decays[0] == pytest.approx(52 / 61) and decays[-1] == pytest.approx(71 / 80)  # warm-up
    kept = math.prod(decays)  # fraction of the old weights left
    with ema.applied(model) as averaged:
        assert torch.allclose(averaged.weight, start["weight"] + (1 - kept), atol=1e-12)
    assert torch.allclose(model.weight, start["weight"] + 1.0, atol=1e-12)  # restored after
    other = WeightAverage(torch.nn.Linear(3, 2).double(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 70 and torch.equal(other.shadow["bias"], ema.shadow["bias"])


def test_ema_model_is_written_and_validated_and_resumes(tmp_path):
    """The model file holds the averaged weights; its errors are the reported ones; a resumed run
    continues the average exactly."""
    config = small_config(steps=40, ema_decay=0.9, keep_best=False, lr_schedule="cosine",
                          log_every=10, validate_every=20, checkpoint_every=20)
    frames = emt_frames(16, seed=5)
    result = train_model(config, frames, tmp_path / "a")
    written = ACNN.load(result.model_path)
    check = load_checkpoint(result.checkpoint_path)
    assert check["ema"]["updates"] == 40
    state = written.state_dict()
    for name, value in check["ema"]["shadow"].items():
        assert torch.equal(state[name], value)
    raw = dict(model_from_record(check["model"]).named_parameters())  # the last weights differ
    assert any(not torch.allclose(p, state[name]) for name, p in raw.items())
    valid = evaluate_errors(written, [frames[i] for i in check["data"]["valid_ids"]])
    assert valid["energy_rmse"] == pytest.approx(result.metrics["valid"]["energy_rmse"], rel=1e-9)
    calls = iter(range(10 ** 6))
    half = train_model(config, frames, tmp_path / "b", should_stop=lambda: next(calls) >= 19)
    assert half.stopped and half.steps == 20  # same 40-step cosine, stopped half way
    resumed = train_model(config, frames, tmp_path / "b", resume=True)
    again = load_checkpoint(resumed.checkpoint_path)["ema"]["shadow"]
    for name, value in check["ema"]["shadow"].items():
        assert torch.allclose(again[name], value, rtol=0, atol=1e-12)
    assert resumed.metrics["valid"]["energy_rmse"] == pytest.approx(result.metrics["valid"]["energy_rmse"])


def test_accuracy_recipe_file_is_a_valid_campaign_file_that_the_benchmark_uses():
    """inputs/accuracy_mlearn.yaml loads as the CLI loads it, and bench_accuracy trains with its
    model/training sections (the budget and --set on top)."""
    from pathlib import Path

    from acnn_mpi.config import load_config

    repo = Path(__file__).resolve().parents[2]
    config = load_config(repo / "inputs" / "accuracy_mlearn.yaml")
    bench_accuracy = import_script("bench_accuracy")
    args = bench_accuracy.parse_args(["--element", "Si", "--steps", "120",
                                      "--set", "training.batch_size=2"])
    settings = bench_accuracy.benchmark_settings(args)
    assert settings["model"]["r_cut_radial"] == config.model.r_cut_radial == 6.0
    assert settings["training"]["lr_schedule"] == config.training.lr_schedule == "cosine"
    assert settings["training"]["steps"] == 120 and settings["training"]["batch_size"] == 2
    assert settings["training"]["energy_loss"] == config.training.energy_loss == "per_atom"
    assert settings["model"]["attention_layers"] == config.model.attention_layers == 0
    assert settings["model"]["bispectrum_l_max"] == config.model.bispectrum_l_max == 2
    assert settings["training"]["weight_decay"] == config.training.weight_decay == 0.2
    assert settings["search"]["committee"] == config.search.committee == 2
    default = bench_accuracy.benchmark_settings(bench_accuracy.parse_args(["--element", "Si"]))
    assert default["training"]["steps"] == config.training.steps == 30000
    single = bench_accuracy.benchmark_settings(bench_accuracy.parse_args(["--committee", "1"]))
    assert single["search"]["committee"] is None


def test_bench_accuracy_recipe_without_steps_is_one_line_and_exit_2(tmp_path, capsys):
    """A recipe with no training.steps and no --steps: one line naming the field and the fix."""
    bench_accuracy = import_script("bench_accuracy")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {l_max: 4}\ntraining: {batch_size: 2}\n")
    with pytest.raises(SystemExit) as stop:
        bench_accuracy.benchmark_settings(bench_accuracy.parse_args(["--recipe", str(recipe)]))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.steps" in err[0] and "--steps" in err[0]
    steps = bench_accuracy.benchmark_settings(bench_accuracy.parse_args(["--recipe", str(recipe),
                                                                          "--steps", "7"]))
    assert steps["training"]["steps"] == 7 and steps["training"]["log_every"] == 1


@pytest.mark.parametrize("change,named", [("model.nope=1", "model.nope: unknown key"),
                                          ("model.l_max=99", "model.l_max = 99"),
                                          ("nope=1", "use model.KEY=VALUE")])
def test_bench_accuracy_bad_set_is_one_line_and_exit_2(tmp_path, capsys, change, named):
    """A bad --set stops the benchmark before any training: one line naming the key, exit 2."""
    from ase.io import write

    bench_accuracy = import_script("bench_accuracy")
    data = tmp_path / "X.xyz"
    write(data, emt_frames(2, seed=0))
    with pytest.raises(SystemExit) as stop:
        bench_accuracy.main(["--train", str(data), "--test", str(data), "--steps", "5", "--set", change,
                             "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --set") and named in err[0]
    assert not (tmp_path / "out" / "X" / "train.log").exists()


@pytest.mark.parametrize("scope", ["all", "matrices"])
def test_weight_decay_on_matrices_shrinks_only_linear_weights(scope):
    """With zero gradients an AdamW step is the decay alone: p ← (1 − lr·wd) p on the decayed
    parameters; with 'matrices' the biases, channel mixing and element embedding stay put."""
    from acnn_mpi.train.api import decay_groups

    config = small_config()
    model = build_acnn(config.model, ["Cu", "Au"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(decay_groups(model, 0.5, scope), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert "descriptor.angular_mixing" not in linear and len(linear) >= 5
    for name, p in model.named_parameters():
        factor = 0.95 if (scope == "all" or name in linear) else 1.0
        assert torch.allclose(p.detach(), factor * before[name], rtol=1e-12, atol=0), name


@pytest.mark.parametrize("valid_only,committee", [(False, None), (True, None), (False, 2)],
                         ids=["test-split", "valid-only", "committee"])
def test_bench_accuracy_reports_errors_per_group(tmp_path, valid_only, committee):
    """bench_accuracy writes the errors of each frame `group` of the reported split; the groups
    partition that split, so their squared errors add up to the split's RMSE. With --committee 2
    the model it reports is the two members' mean."""
    import json
    from ase.io import write

    bench_accuracy = import_script("bench_accuracy")
    frames = emt_frames(8, seed=1)
    for k, atoms in enumerate(frames):
        atoms.info["group"] = "Bulk" if k % 3 else "Alloy"
    data = tmp_path / "X.xyz"
    write(data, frames)
    argv = ["--train", str(data), "--test", str(data), "--steps", "4", "--out", str(tmp_path / "out"),
            "--set", "model.l_max=2", "--set", "model.n_radial=4", "--set", "model.n_angular=3",
            "--set", "model.embedding=[8]", "--set", "model.fitting=[8]", "--set", "model.r_cut_radial=4.0",
            "--set", "model.r_cut_angular=4.0"]
    if valid_only:
        argv += ["--valid-only", "--set", "training.validation_fraction=0.5"]
    argv += ["--committee", str(committee or 1)]  # the recipe's own is a committee of 2
    assert bench_accuracy.main(argv) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())["results"][0]
    assert result["committee"] == committee
    if committee:
        from acnn_mpi.train.committee import CommitteeMean
        from acnn_mpi.train.metrics import evaluate_errors
        from acnn_mpi.train.models import load_model

        mean = load_model(tmp_path / "out" / "X" / "model.pt")
        assert isinstance(mean, CommitteeMean) and len(mean.members) == committee
        assert (tmp_path / "out" / "X" / "member_1" / "model.pt").is_file()
        assert result["test"]["energy_rmse"] == pytest.approx(evaluate_errors(mean, frames)["energy_rmse"])
    split = "valid" if valid_only else "test"
    groups = result[f"{split}_groups"]
    assert set(groups) <= {"Alloy", "Bulk"} and groups
    total = result[split]
    assert sum(g["n_frames"] for g in groups.values()) == total["n_frames"]
    energy_sq = sum(g["n_frames"] * g["energy_rmse"] ** 2 for g in groups.values())
    force_sq = sum(3 * g["n_atoms"] * g["force_rmse"] ** 2 for g in groups.values())
    assert math.sqrt(energy_sq / total["n_frames"]) == pytest.approx(total["energy_rmse"], rel=1e-4)
    assert math.sqrt(force_sq / (3 * total["n_atoms"])) == pytest.approx(total["force_rmse"], rel=1e-4)
    assert total["force_rmse"] > 0


def test_split_by_trajectory_holds_out_whole_trajectories(tmp_path, capsys):
    """Snapshots a few 0.05 Å apart in one cell are one trajectory and stay together; frames of
    another cell, or moved by far more than the link RMSD, are trajectories of their own."""
    import numpy as np
    from ase.build import bulk
    from ase.io import read, write

    split = import_script("split_by_trajectory")
    rng = np.random.default_rng(0)
    base = bulk("Si", "diamond", a=5.43, cubic=True)
    frames = []
    for k in range(6):                                   # one MD-like trajectory: 6 close snapshots
        a = base.copy()
        a.positions += 0.05 * k + rng.normal(scale=0.02, size=a.positions.shape)
        a.info["group"] = "AIMD"
        frames.append(a)
    for k in range(4):                                   # four unrelated strained cells
        a = base.copy()
        a.set_cell(base.cell[:] * (1 + 0.02 * (k + 1)), scale_atoms=True)
        a.info["group"] = "Elastic"
        frames.append(a)
    components = split.trajectories(frames, 1.0)
    assert sorted(map(len, components)) == [1, 1, 1, 1, 6]
    assert split.rmsd(frames[0], frames[6]) == float("inf")
    assert 0.05 < split.rmsd(frames[0], frames[1]) < 0.2
    write(tmp_path / "all.xyz", frames)
    assert split.main([str(tmp_path / "all.xyz"), "--out", str(tmp_path / "s"), "--fraction", "0.3",
                       "--seed", "1"]) == 0
    valid, train = read(tmp_path / "s_valid.xyz", ":"), read(tmp_path / "s_train.xyz", ":")
    assert len(valid) + len(train) == 10 and len(valid) >= 3
    aimd_valid = sum(a.info["group"] == "AIMD" for a in valid)
    assert aimd_valid in (0, 6)                          # the trajectory is never cut
    # --hold-group: the named group's trajectories held out on top of the fraction, whole
    assert split.main([str(tmp_path / "all.xyz"), "--out", str(tmp_path / "g"), "--fraction", "0.05",
                       "--seed", "1", "--hold-group", "Elastic=3"]) == 0
    valid = read(tmp_path / "g_valid.xyz", ":")
    elastic, aimd = (sum(a.info["group"] == g for a in valid) for g in ("Elastic", "AIMD"))
    assert aimd in (0, 6) and elastic in (3, 4)          # 3 asked for, and 1 if the fraction drew one
    assert len(valid) == elastic + aimd and (aimd == 6) != (elastic == 4)  # the fraction drew 1 trajectory
    for bad, named in (("Elastic=9", "trajectories of group 'Elastic' left"), ("Elastic", "GROUP=N")):
        with pytest.raises(SystemExit) as stop:
            split.main([str(tmp_path / "all.xyz"), "--out", str(tmp_path / "b"), "--hold-group", bad])
        assert stop.value.code == 2 and named in capsys.readouterr().err
