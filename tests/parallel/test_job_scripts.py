"""The shipped Slurm and PBS job scripts resubmit themselves after exit code 3 (stopped before the
walltime), not after 0 (finished) or an error; the scheduler commands are stand-ins that record
how they were called."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

STUB = '#!/bin/bash\necho "{name} $*" >> "$CALLS"\n{body}\n'


def stand_ins(tmp_path: Path) -> dict:
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    bin_dir.mkdir()
    bodies = {"srun": 'exit "$FAKE_STATUS"', "mpiexec": 'exit "$FAKE_STATUS"',
              "scontrol": 'echo "   Command=/home/me/camp/slurm_job.sh"', "sbatch": "", "qsub": ""}
    for name, body in bodies.items():
        path = bin_dir / name
        path.write_text(STUB.format(name=name, body=body))
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ACNN_VENV": str(venv),
            "CALLS": str(tmp_path / "calls.log"), "SLURM_JOB_ID": "101", "PBS_JOBID": "202.pbs",
            "PBS_O_WORKDIR": str(tmp_path)}


def submit(script, tmp_path, status, **extra):
    env = {**os.environ, **stand_ins(tmp_path), "FAKE_STATUS": str(status), **extra}
    done = subprocess.run(["bash", str(REPO / "scripts" / script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    return done, calls


@pytest.mark.parametrize("status", [0, 3, 1])
def test_slurm_job_resubmits_only_a_stopped_campaign(tmp_path, status):
    done, calls = submit("slurm_job.sh", tmp_path, status)
    assert done.returncode == status
    assert calls[0] == "srun python -m acnn_mpi"
    resubmitted = [c for c in calls if c.startswith("sbatch")]
    if status == 3:
        assert resubmitted == ["sbatch --dependency=afterany:101 --export=ALL,ACNN_JOB_NUMBER=2 "
                               "/home/me/camp/slurm_job.sh"]
    else:
        assert resubmitted == []


def test_slurm_chain_ends_at_max_jobs(tmp_path):
    done, calls = submit("slurm_job.sh", tmp_path, 3, ACNN_JOB_NUMBER="20", ACNN_MAX_JOBS="20")
    assert done.returncode == 3 and not [c for c in calls if c.startswith("sbatch")]
    assert "20 jobs done, not resubmitting" in done.stderr


@pytest.mark.parametrize("status", [0, 3, 2])
def test_pbs_job_resubmits_only_a_stopped_campaign(tmp_path, status):
    (tmp_path / "nodes").write_text("n1\nn1\nn1\n")
    done, calls = submit("pbs_job.sh", tmp_path, status, PBS_NODEFILE=str(tmp_path / "nodes"))
    assert done.returncode == status
    assert calls[0] == "mpiexec -n 3 python -m acnn_mpi"
    resubmitted = [c for c in calls if c.startswith("qsub")]
    if status == 3:
        assert len(resubmitted) == 1
        assert resubmitted[0].startswith("qsub -W depend=afterany:202.pbs -v ACNN_JOB_NUMBER=2,")
        assert resubmitted[0].endswith(f" {tmp_path}/pbs_job.sh")
    else:
        assert resubmitted == []
