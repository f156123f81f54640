"""`python -m acnn_mpi train`: progress and errors, and two MPI ranks giving the serial model."""

import ase.io
import pytest
import torch

from acnn_mpi.model.potential import ACNN
from acnn_mpi.train import train_model
from tests.train.helpers import emt_frames, small_config, write_small_yaml


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "frames.xyz"
    ase.io.write(data, emt_frames(12, seed=3), format="extxyz")
    extra = tmp_path / "extra.xyz"
    ase.io.write(extra, emt_frames(3, seed=9), format="extxyz")
    return data, extra


def test_missing_file_is_one_line(acnn, tmp_path):
    result = acnn(["train", "--data", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o")])
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"error: --data {tmp_path / 'nope.h5'}: file not found"]


def test_progress_lines_and_extra_validation_file(acnn, tmp_path, files):
    data, extra = files
    config = write_small_yaml(tmp_path / "c.yaml", steps=4, log_every=2, validate_every=4)
    result = acnn(["train", "--data", data, "--config", config, "--out", tmp_path / "o",
                   "--valid", extra, "--threads", "1"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "step 2/4  loss" in result.stderr and "lr 0.01" in result.stderr
    assert "step 4/4" in result.stderr and "| valid E" in result.stderr and "| extra E" in result.stderr
    assert "trained to step 4: " in result.stdout and "training, " in result.stdout
    assert "extra (3 frames): energy_rmse" in result.stdout
    assert (tmp_path / "o" / "model.pt").is_file() and (tmp_path / "o" / "metrics.csv").is_file()


@pytest.mark.mpi
def test_two_ranks_train_the_same_model_as_one(acnn, tmp_path, files):
    data, _ = files
    # 3 structures per global minibatch over 2 ranks: an uneven 2 + 1 split
    config = write_small_yaml(tmp_path / "c.yaml", steps=5, batch_size=3, log_every=5)
    result = acnn(["train", "--data", data, "--config", config, "--out", tmp_path / "mpi"],
                  ranks=2, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("trained to step 5") == 1  # the root reports
    assert "gloo over 2 ranks" in result.stderr
    serial = train_model(small_config(steps=5, batch_size=3, log_every=5), data, tmp_path / "serial")
    a = ACNN.load(tmp_path / "mpi" / "model.pt").state_dict()
    b = ACNN.load(serial.model_path).state_dict()
    initial = ACNN.load(serial.model_path)  # sanity: training moved the parameters
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-11, msg=key)
    del initial
