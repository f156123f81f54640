"""A campaign with a committee (search.committee: 2): the config validates, the tiny campaign runs
to the end serially with a model and checkpoint per member and the spread of every selected
hull pick recorded, and under mpiexec -n 2 (one member per rank) a kill -9 during training
resumes to the serial run's final hull."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from acnn_mpi.config import config_from_dict
from acnn_mpi.errors import UserError
from tests.campaign.test_campaign import final_hull, wait_for_stage
from tests.conftest import MPIEXEC, REPO, run_python

TINY = Path(__file__).with_name("tiny.yaml")


@pytest.mark.parametrize("value, expected", [
    (1, "search.committee = 1"), (0, "search.committee = 0"), (True, "search.committee"),
    ("four", "search.committee = 'four'")])
def test_committee_config_validates(value, expected):
    with pytest.raises(UserError) as error:
        config_from_dict({"elements": ["Cu"], "search": {"committee": value}}, source="t.yaml")
    assert expected in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="committee_spread_mev_per_atom"):
        config_from_dict({"elements": ["Cu"], "search": {"committee_spread_mev_per_atom": -1}})
    config = config_from_dict({"elements": ["Cu"], "search": {"committee": 3}})
    assert config.search.committee == 3
    assert config_from_dict({"elements": ["Cu"]}).search.committee is None   # default: off


def committee_yaml(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["search"]["committee"] = 2
    path = tmp_path / "tiny_committee.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("committee")
    config = committee_yaml(root)
    result = run_python(["-m", "acnn_mpi", "run", config, "--output-dir", root / "run", "--threads", "1"],
                        timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return config, root / "run"


def test_serial_committee_campaign_runs_to_the_end(serial):
    _, out = serial
    state = json.loads((out / "state.json").read_text())
    assert state["final_done"] and state["iteration"] == 3
    for k in range(3):
        assert (out / "models" / f"model_{k:03d}.pt").is_file()
        assert (out / "models" / f"model_{k:03d}.member_1.pt").is_file()
        assert (out / f"train_{k:03d}" / "member_1" / "checkpoint.pt").is_file()
    for k in (1, 2):
        selection = json.loads((out / f"iter_{k:03d}" / "selection.json").read_text())
        assert selection["committee"]["members"] == 2 and selection["committee"]["evaluated"] > 0
        spreads = [s for s, r in zip(selection["spreads_mev_per_atom"], selection["reasons"]) if r == "hull"]
        assert spreads and all(s is not None and 0 < s < 1e5 for s in spreads), spreads
    assert {"Cu", "Pt"} <= {p["formula"] for p in final_hull(out)["stable"]}
    report = run_python(["-m", "acnn_mpi", "report", out], timeout=120)
    assert report.returncode == 0, report.stderr
    assert "committee spread" in (out / "report" / "report.md").read_text()


@pytest.mark.mpi
def test_kill_during_committee_training_resumes_to_the_same_hull(serial, tmp_path):
    config, out = serial
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "acnn_mpi", "run", str(config),
               "--output-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    reached = wait_for_stage(tmp_path, 1, "train", process)
    time.sleep(0.5)
    assert reached, "the campaign ended before the training to kill in"
    import os

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    result = run_python(["-m", "acnn_mpi", "run", config, "--output-dir", tmp_path], ranks=2, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_hull(tmp_path) == final_hull(out)
    spreads = [json.loads((d / "iter_002/selection.json").read_text())["spreads_mev_per_atom"]
               for d in (out, tmp_path)]
    assert np.allclose(*[[np.nan if s is None else s for s in row] for row in spreads], equal_nan=True)


def test_a_committee_switched_on_mid_campaign_is_one_line(serial, tmp_path):
    """The serial run's directory, resumed at its iteration-2 training with 3 members: member 2
    of iteration 1 does not exist, so the run stops with one line naming the setting."""
    config, out = serial
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    state = json.loads((copy / "state.json").read_text())
    state.update(iteration=2, stage="train", converged=False, final_done=False)
    (copy / "state.json").write_text(json.dumps(state))
    data = yaml.safe_load(Path(config).read_text())
    data["search"]["committee"] = 3
    bigger = tmp_path / "three.yaml"
    bigger.write_text(yaml.safe_dump(data))
    result = run_python(["-m", "acnn_mpi", "run", bigger, "--output-dir", copy, "--threads", "1"], timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "search.committee = 3" in line and "model_001.member_2.pt not found" in line, line
