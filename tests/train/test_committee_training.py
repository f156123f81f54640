"""A committee trained by ``acnn_mpi train``: k members on one validation split, member 0 the
single-model training, the written model their mean (one file every loader reads), and the CLI
on one and two ranks."""

import json

import ase.io
import numpy as np
import pytest
import torch

from acnn_mpi.errors import UserError
from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.potential import ACNN
from acnn_mpi.relax.evaluators import load_model as load_relax_model
from acnn_mpi.state import Batch
from acnn_mpi.train import train_model
from acnn_mpi.train.checkpoint import load_checkpoint
from acnn_mpi.train.committee import CommitteeMean, read_committee_payload
from acnn_mpi.train.committee_training import train_committee_model
from acnn_mpi.train.metrics import evaluate_errors
from acnn_mpi.train.models import load_model
from tests.train.helpers import emt_frames, small_config, write_small_yaml
from tests.train.test_committee import probes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A committee of 2 trained 6 steps on 12 EMT frames (serial), and its data."""
    root = tmp_path_factory.mktemp("committee_training")
    config = small_config(steps=6, validate_every=6, log_every=6)
    frames = emt_frames(12, seed=3)
    extra = emt_frames(3, seed=9)
    result = train_committee_model(config, frames, root / "out", None, 2, valid=extra)
    return config, frames, extra, root, result


def test_members_share_the_split_and_member_0_is_the_single_model(trained):
    config, frames, _, root, result = trained
    out = root / "out"
    splits = [load_checkpoint(out / f"member_{m}" / "checkpoint.pt")["data"] for m in range(2)]
    assert list(splits[0]["valid_ids"]) == list(splits[1]["valid_ids"]) and len(splits[0]["valid_ids"])
    assert load_checkpoint(out / "member_1" / "checkpoint.pt")["settings"]["training"]["seed"] == 1
    single = train_model(config, frames, root / "single")
    a = ACNN.load(out / "member_0" / "model.pt").state_dict()
    b = ACNN.load(single.model_path).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert result.n_valid == single.n_valid and result.steps == 6 and not result.stopped


def test_the_model_file_is_the_members_mean(trained):
    _, frames, extra, root, result = trained
    out = root / "out"
    members = [ACNN.load(out / f"member_{m}" / "model.pt") for m in range(2)]
    for loaded in (load_model(result.model_path), load_relax_model(str(result.model_path))):
        assert isinstance(loaded, CommitteeMean) and loaded.elements == members[0].elements
        batch = Batch.from_atoms(probes(), dtype=torch.float64)
        energies = [evaluate(m, batch).energy.detach() for m in members]
        np.testing.assert_allclose(evaluate(loaded, batch).energy.detach().numpy(),
                                   ((energies[0] + energies[1]) / 2).numpy(), rtol=1e-12)
    mean = CommitteeMean(members)
    assert result.metrics["extra"]["energy_rmse"] == pytest.approx(
        evaluate_errors(mean, extra)["energy_rmse"], rel=1e-10)
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["committee"] == 2 and set(recorded["members"]) == {"0", "1"}
    assert recorded["final"]["valid"]["energy_rmse"] == pytest.approx(result.metrics["valid"]["energy_rmse"])
    assert recorded["records"] and recorded["records"][-1]["step"] == 6
    # the members' own errors are reported next to the mean's, and differ from it
    assert result.metrics["members"][1]["extra"]["energy_rmse"] != result.metrics["extra"]["energy_rmse"]


def test_committee_file_is_recognised_and_other_files_are_not(trained, tmp_path):
    _, _, _, root, result = trained
    assert read_committee_payload(result.model_path)["version"] == 1
    assert read_committee_payload(root / "out" / "member_0" / "model.pt") is None
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    assert read_committee_payload(junk) is None
    with pytest.raises(ValueError, match="not a committee"):
        CommitteeMean.load(root / "out" / "member_0" / "model.pt")


def test_refining_from_a_committee_is_refused(trained, tmp_path):
    config, frames, _, _, result = trained
    with pytest.raises(UserError, match="refine from one member"):
        train_model(config, frames, tmp_path / "r", refine_from=result.model_path)


def test_cli_committee_flag(acnn, tmp_path):
    data = tmp_path / "frames.xyz"
    ase.io.write(data, emt_frames(12, seed=3), format="extxyz")
    config = write_small_yaml(tmp_path / "c.yaml", steps=4, log_every=4, validate_every=4)
    bad = acnn(["train", "--data", data, "--config", config, "--out", tmp_path / "o0",
                "--committee", "0"])
    assert bad.returncode == 2 and "--committee 0: give K >= 2" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.mpi
def test_two_ranks_train_two_members_side_by_side(acnn, tmp_path):
    """mpiexec -n 2 ... --committee 2: one member per rank, each the serial member."""
    data = tmp_path / "frames.xyz"
    frames = emt_frames(12, seed=3)
    ase.io.write(data, frames, format="extxyz")
    config = write_small_yaml(tmp_path / "c.yaml", steps=4, log_every=4, validate_every=4)
    result = acnn(["train", "--data", data, "--config", config, "--out", tmp_path / "mpi",
                   "--committee", "2", "--threads", "1"], ranks=2, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("committee of 2") == 1 and "member 1 valid" in result.stdout
    assert "member(s) 0 on rank(s) 0; member(s) 1 on rank(s) 1" in result.stderr
    progress = [line for line in result.stderr.splitlines() if " step 4/4 " in line]
    assert sorted(line.split()[1] for line in progress) == ["[0/2]", "[1/2]"]  # each member's rank
    serial = train_committee_model(small_config(steps=4, log_every=4, validate_every=4), str(data),
                                   tmp_path / "serial", None, 2)
    for m in range(2):
        a = ACNN.load(tmp_path / "mpi" / f"member_{m}" / "model.pt").state_dict()
        b = ACNN.load(tmp_path / "serial" / f"member_{m}" / "model.pt").state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12, msg=f"{m} {key}")
    assert isinstance(load_model(tmp_path / "mpi" / "model.pt"), CommitteeMean)
    assert serial.metrics["valid"]["n_frames"] == json.loads(
        (tmp_path / "mpi" / "metrics.json").read_text())["final"]["valid"]["n_frames"]
