"""The self-optimizing campaign end to end under `mpiexec -n 2`: it finishes, it recovers the known
phases of the demo system, and it resumes after kill -9 or a scheduler's signal with the same result."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MPIEXEC, REPO, run_python

pytestmark = pytest.mark.mpi
TINY = Path(__file__).with_name("tiny.yaml")


def campaign(directory, config=TINY, ranks=2, timeout=600):
    return run_python(["-m", "acnn_mpi", "run", config, "--output-dir", directory], ranks=ranks,
                      timeout=timeout)


def final_hull(directory):
    """The final hull without the store row of each structure (labels are stored in the order
    calculations finish, which differs between runs; structure ids and energies do not)."""
    hull = json.loads((Path(directory) / "final" / "hull.json").read_text())
    return {key: [{k: v for k, v in entry.items() if k != "frame"} for entry in entries]
            for key, entries in hull.items()}


def start_campaign(directory):
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "acnn_mpi", "run", str(TINY),
               "--output-dir", str(directory)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_stage(directory, iteration, stage, process, timeout=300):
    """Block until state.json says (iteration, stage) is next, or the run ended."""
    state = Path(directory) / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists():
            try:
                data = json.loads(state.read_text())
            except json.JSONDecodeError:
                data = {}
            if (data.get("iteration"), data.get("stage")) >= (iteration, stage) or data.get("converged"):
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference")
    result = campaign(directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def test_tiny_campaign_finishes(reference):
    state = json.loads((reference / "state.json").read_text())
    assert state["final_done"] and state["iteration"] == 3
    assert [r["iteration"] for r in state["history"]] == [0, 1, 2]
    for record in state["history"][1:]:
        assert record["structures_relaxed"] > 0 and record["labelled"] > 0
        assert "energy_rmse" in record["validation"]  # learning curve: model k-1 on labels of k
    for k in range(3):
        assert (reference / f"iter_{k:03d}" / "hull.csv").exists()
        assert (reference / "models" / f"model_{k:03d}.pt").exists()
    hull = final_hull(reference)
    formulas = {p["formula"] for p in hull["stable"]}
    assert {"Cu", "Pt"} <= formulas


SLOW = pytest.mark.slow


@pytest.mark.parametrize("iteration, stage", [
    (1, "csp"),
    pytest.param(0, "label", marks=SLOW), pytest.param(0, "train", marks=SLOW),
    pytest.param(1, "process", marks=SLOW), pytest.param(1, "label", marks=SLOW),
    pytest.param(2, "train", marks=SLOW), pytest.param(3, "csp", marks=SLOW),  # 3/csp: final stage
])
def test_kill_and_resume_gives_the_same_result(reference, tmp_path, iteration, stage):
    """kill -9 the whole job once the given stage is the next to run, then rerun the command."""
    process = start_campaign(tmp_path)
    reached = wait_for_stage(tmp_path, iteration, stage, process)
    time.sleep(1.0)  # into the stage
    assert reached, "the campaign ended before the stage to kill in"
    import os

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    result = campaign(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_hull(tmp_path) == final_hull(reference)


def test_sigterm_stops_cleanly_then_resumes(reference, tmp_path):
    process = start_campaign(tmp_path)
    assert wait_for_stage(tmp_path, 1, "csp", process)
    import os

    os.killpg(process.pid, signal.SIGTERM)  # what a scheduler sends before the walltime
    start = time.monotonic()
    output, _ = process.communicate(timeout=120)
    assert time.monotonic() - start < 60
    assert process.returncode == 3, output.decode()[-2000:]
    assert b"run the same command to resume" in output
    result = campaign(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_hull(tmp_path) == final_hull(reference)
