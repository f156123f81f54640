"""Shared test helpers: the mpiexec beside the Python in use, and subprocess runners."""

import os

# One BLAS/OpenMP thread per test process: tests run beside MPI children and each other, and
# oversubscribed BLAS threads slow small linear algebra by an order of magnitude.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run_python(args, *, ranks=None, timeout=120, cwd=None, env=None, check=False):
    """Run ``python ARGS`` (under ``mpiexec -n ranks`` when given); returns CompletedProcess."""
    command = [sys.executable, *map(str, args)]
    if ranks is not None:
        if not MPIEXEC.exists():
            pytest.skip(f"no mpiexec beside {sys.executable}")
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            cwd=cwd or REPO, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def acnn():
    """Run ``python -m acnn_mpi ARGS``: acnn(args, ranks=None, **kwargs)."""
    def runner(args, **kwargs):
        return run_python(["-m", "acnn_mpi", *args], **kwargs)
    return runner
