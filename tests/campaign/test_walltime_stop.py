"""The campaign stops by itself before the batch job's end (no signal set up by anyone): state
saved, exit code 3, and the same command resumes it to the end."""

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.mpi
TINY = Path(__file__).with_name("tiny.yaml")
MARGIN_S = 30


def tiny_with_margin(directory: Path) -> Path:
    path = directory / "tiny.yaml"
    path.write_text(TINY.read_text() + f"parallel: {{walltime_margin_s: {MARGIN_S}}}\n")
    return path


def run_campaign(config, out, end_s, ranks=2):
    """The tiny campaign under a faked Slurm job that ends at ``end_s`` (Unix seconds)."""
    return run_python(["-m", "acnn_mpi", "run", config, "--output-dir", out], ranks=ranks,
                      timeout=600, env={"SLURM_JOB_END_TIME": str(int(end_s)),
                                        "ACNN_MPI_JOB_END_TIME": ""})


def stop_then_resume(tmp_path, ranks=2):
    """Run with the job ending MARGIN_S + 6 s from now (a few seconds into the campaign), then
    resume in a job with time to spare; returns (stopped run, its state.json, resumed run, output
    folder)."""
    config, out = tiny_with_margin(tmp_path), tmp_path / "out"
    stopped = run_campaign(config, out, time.time() + MARGIN_S + 6, ranks)
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").exists() else {}
    resumed = run_campaign(config, out, time.time() + 86400, ranks)
    return stopped, state, resumed, out


def test_job_end_time_stops_the_campaign_then_it_resumes(tmp_path):
    stopped, state, resumed, out = stop_then_resume(tmp_path)
    log = stopped.stdout + stopped.stderr
    assert stopped.returncode == 3, log[-3000:]
    assert "(SLURM_JOB_END_TIME): stopping cleanly 30 s before it" in log
    assert f"(walltime margin {MARGIN_S} s): finishing the work in flight" in log
    assert "run the same command to resume" in log
    assert state and not state["final_done"]
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["final_done"] and (out / "final" / "hull.json").exists()
