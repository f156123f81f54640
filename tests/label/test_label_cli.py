"""``python -m acnn_mpi label``: serial and under ``mpiexec -n 2``; every structure labelled once,
failures recorded and skipped on rerun, a killed job resumed with only the missing ones."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from acnn_mpi.label.sink import FailureLog, LabelSink
from tests.conftest import MPIEXEC, REPO

PY = sys.executable


def write_structures(path, n, first_id=100):
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.62 + 0.01 * (i % 5), cubic=True)
        if i % 2:
            atoms[1].symbol = "Au"
        atoms.rattle(0.03, seed=i)
        atoms.info["structure_id"] = first_id + i
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return frames


def test_serial_label_and_resume(acnn, tmp_path):
    frames = write_structures(tmp_path / "in.xyz", 5)
    out = tmp_path / "labels.h5"
    args = ["label", "--input", str(tmp_path / "in.xyz"), "--out", str(out),
            "--calculator", "ase.calculators.emt.EMT"]
    result = acnn(args, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "labelled 5, failed 0 of 5" in result.stdout
    stored = {a.info["structure_id"]: a for a in LabelSink(str(out)).read()}
    assert sorted(stored) == [100, 101, 102, 103, 104]
    for atoms in frames:
        label = stored[atoms.info["structure_id"]]
        np.testing.assert_allclose(label.positions, atoms.positions, atol=1e-7)   # extxyz input
        reference = label.copy()
        reference.calc = EMT()
        assert label.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(label.get_forces(), reference.get_forces(), atol=1e-9)
        np.testing.assert_allclose(label.get_stress(), reference.get_stress(), atol=1e-9)
    again = acnn(args, timeout=120)
    assert again.returncode == 0 and "labelled 0, failed 0 of 5 structures (5 already labelled" in again.stdout
    assert len(LabelSink(str(out)).read()) == 5


def test_bad_input_is_one_clear_line(acnn, tmp_path):
    result = acnn(["label", "--input", str(tmp_path / "missing.xyz"), "--out", str(tmp_path / "l.h5"),
                   "--calculator", "ase.calculators.emt.EMT"], timeout=60)
    assert result.returncode == 2 and "missing.xyz: no such file" in result.stderr


@pytest.mark.mpi
def test_mpi_two_ranks_emt_from_campaign_file(acnn, tmp_path):
    write_structures(tmp_path / "in.xyz", 12)
    # EMT slowed down to DFT-like pacing (0.2 s), so that both ranks surely get work
    (tmp_path / "slowemt.py").write_text(
        "import time\nfrom ase.calculators.emt import EMT\n"
        "class SlowEMT(EMT):\n    def calculate(self, *a, **k):\n"
        "        time.sleep(0.2)\n        super().calculate(*a, **k)\n")
    config = tmp_path / "campaign.yaml"
    config.write_text("elements: [Cu, Au]\npressure: 0\nlabeller:\n  kind: ase\n"
                      "  calculator: slowemt.SlowEMT\n")
    out = tmp_path / "labels.h5"
    result = acnn(["label", "--input", str(tmp_path / "in.xyz"), "--out", str(out),
                   "--config", str(config)], ranks=2, timeout=120,
                  env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("labelled 12, failed 0 of 12") == 1       # the root reports once
    ids = [a.info["structure_id"] for a in LabelSink(str(out)).read()]
    assert sorted(ids) == list(range(100, 112))                           # each exactly once
    summary = json.loads((tmp_path / "labels.summary.json").read_text())
    assert set(summary["per_rank"]) == {"0", "1"}                         # both ranks labelled
    assert len(summary["seconds"]) == 12


#: Fake DFT code: labels with EMT; fails for ids in $FAIL_IDS; sleeps $SLEEP seconds first.
FAKE = r'''
import os, re, sys, time
sid = re.search(r"structure_id=(\d+)", open(sys.argv[1]).read()).group(1)
print("fake code on structure", sid, "PMI_RANK" in os.environ, flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
if sid in os.environ.get("FAIL_IDS", "").split(","):
    print("ERROR: ZBRENT: fatal error in bracketing", flush=True)
    sys.exit(2)
from ase.io import read, write
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
atoms = read(sys.argv[1], format="extxyz")
atoms.calc = EMT()
atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                   forces=atoms.get_forces(), stress=atoms.get_stress())
write(sys.argv[2], atoms, format="extxyz")
'''


def command_config(tmp_path, env):
    (tmp_path / "fake.py").write_text(FAKE)
    config = tmp_path / "campaign.yaml"
    env_lines = "".join(f"    {k}: '{v}'\n" for k, v in env.items())
    config.write_text(
        "elements: [Cu, Au]\nlabeller:\n  kind: command\n"
        f"  command: '{PY} {tmp_path / 'fake.py'} {{input}} {{output}}'\n"
        "  input_format: extxyz\n  retries: 1\n  timeout: 60\n"
        f"  env:\n{env_lines}")
    return config


@pytest.mark.mpi
def test_mpi_failures_recorded_skipped_and_retried(acnn, tmp_path):
    write_structures(tmp_path / "in.xyz", 4)
    out = tmp_path / "labels.h5"
    base = ["label", "--input", str(tmp_path / "in.xyz"), "--out", str(out)]
    config = command_config(tmp_path, {"FAIL_IDS": "101,103"})
    result = acnn(base + ["--config", str(config)], ranks=2, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "labelled 2, failed 2 of 4" in result.stdout and "crash 2" in result.stdout
    records = FailureLog(str(tmp_path / "labels.failures.jsonl")).records()
    assert sorted(r["structure_id"] for r in records) == [101, 103]
    for record in records:
        assert record["failure"] == "crash" and record["attempts"] == 2      # retried once
        assert "ZBRENT: fatal error" in record["log_tail"]
        assert "fake code on structure" in record["log_tail"]
        assert "False" in record["log_tail"]   # the code did not see the launcher's PMI_RANK
    summary = json.loads((tmp_path / "labels.summary.json").read_text())
    assert set(summary["per_rank"]) == {"1"}   # external code: the root only deals
    # rerun: nothing left (labelled ones and recorded failures are skipped)
    result = acnn(base + ["--config", str(config)], ranks=2, timeout=180)
    assert "labelled 0, failed 0 of 4 structures (2 already labelled, 2 skipped" in result.stdout
    # the code fixed: --retry-failed labels the two
    config = command_config(tmp_path, {"FAIL_IDS": ""})
    result = acnn(base + ["--config", str(config), "--retry-failed"], ranks=2, timeout=180)
    assert "labelled 2, failed 0 of 4" in result.stdout, result.stdout + result.stderr
    ids = sorted(a.info["structure_id"] for a in LabelSink(str(out)).read())
    assert ids == list(range(100, 104))


@pytest.mark.mpi
def test_killed_job_resumes_with_only_the_missing_ones(tmp_path):
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable}")
    write_structures(tmp_path / "in.xyz", 8)
    out = tmp_path / "labels.xyz"
    config = command_config(tmp_path, {"SLEEP": "0.2"})
    command = [str(MPIEXEC), "-n", "3", PY, "-m", "acnn_mpi", "label", "--input",
               str(tmp_path / "in.xyz"), "--out", str(out), "--config", str(config)]
    log = open(tmp_path / "first.log", "w")
    job = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if out.exists() and out.read_text().count("structure_id=") >= 2:
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)          # the scheduler pulls the plug
    job.wait(timeout=30)
    first = set(a.info["structure_id"] for a in LabelSink(str(out)).read()) if out.exists() else set()
    assert 2 <= len(first) < 8, first
    time.sleep(0.5)   # let orphaned fake codes (own sessions) finish before the rerun
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    labelled = [a.info["structure_id"] for a in LabelSink(str(out)).read()]
    assert sorted(labelled) == list(range(100, 108))                    # each exactly once
    assert f"labelled {8 - len(first)}, failed 0 of 8" in result.stdout


ENV_DEMO = """
import subprocess, sys
from acnn_mpi.parallel.comm import get_world
from acnn_mpi.label.process import child_environment
comm = get_world()
child = [sys.executable, "-c", "from mpi4py import MPI; c = MPI.COMM_WORLD; "
         "print('child is rank', c.Get_rank(), 'of', c.Get_size(), flush=True)"]
if comm.rank == 1:
    for inherit in (False, True):
        try:
            r = subprocess.run(child, env=child_environment(inherit_mpi_env=inherit),
                               capture_output=True, text=True, timeout=20)
            print("inherit", inherit, "rc", r.returncode, r.stdout.strip(), flush=True)
        except subprocess.TimeoutExpired:
            print("inherit", inherit, "hung", flush=True)
comm.barrier()
"""


@pytest.mark.mpi
def test_mpi_program_started_by_a_rank_runs_as_its_own_job(tmp_path):
    """Why the stripping matters: an MPI child that inherits a rank's PMI_* variables tries to join
    the launcher's job (MPICH: PMI_Init fails); with the stripped environment it starts on its own."""
    from tests.conftest import run_python

    script = tmp_path / "demo.py"
    script.write_text(ENV_DEMO)
    result = run_python([script], ranks=2, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("inherit")]
    assert "inherit False rc 0 child is rank 0 of 1" in lines, result.stdout + result.stderr
    inherited = next(line for line in lines if line.startswith("inherit True"))
    assert "rc 0 child is rank 0 of 1" not in inherited


def test_frames_refused_by_the_store_are_recorded_failures(acnn, tmp_path):
    pytest.importorskip("acnn_mpi.data.validate", reason="no data store validation in this tree")
    frames = write_structures(tmp_path / "in.xyz", 3)
    frames[1].positions[1] = frames[1].positions[0] + [0.2, 0.0, 0.0]   # 0.2 Å apart: broken
    write(tmp_path / "in.xyz", frames, format="extxyz")
    out = tmp_path / "labels.h5"
    result = acnn(["label", "--input", str(tmp_path / "in.xyz"), "--out", str(out),
                   "--calculator", "ase.calculators.emt.EMT", "--iteration", "4"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "labelled 2, failed 1 of 3" in result.stdout
    (record,) = FailureLog(str(tmp_path / "labels.failures.jsonl")).records()
    assert record["structure_id"] == 101 and record["failure"] == "invalid"
    assert "refused by the labels store" in record["reason"] and "apart" in record["reason"]
    stored = LabelSink(str(out)).read()
    assert sorted(a.info["structure_id"] for a in stored) == [100, 102]
    assert all(a.info["iteration"] == 4 and a.info["source"] == "in.xyz" for a in stored)
    assert all(a.info["labeller"] == "ase:ase.calculators.emt.EMT" for a in stored)
