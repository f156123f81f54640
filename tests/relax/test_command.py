"""`python -m acnn_mpi relax`: serial, under mpiexec -n 2, and killed then resumed."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from ase.io import write

from acnn_mpi.relax.shards import list_shards, read_results
from tests.conftest import MPIEXEC, REPO
from tests.relax.helpers import random_argon

N = 24
COMMON = ["--model", "lj:0.0104,3.4,8.5", "--pressure", "0.5", "--batch-size", "4", "--chunk-size", "4",
          "--fmax", "3e-3", "--dh-tol", "1e-5", "--log-every", "0.05"]


@pytest.fixture(scope="module")
def structures_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("relax_input") / "structures.xyz"
    structures = random_argon(N, seed=21, nmin=4, nmax=8)
    for k, atoms in enumerate(structures):
        atoms.info["structure_id"] = 500 + k
    write(path, structures)
    return path


def _committed_rows(out):
    total = 0
    for path in list_shards(out):
        with h5py.File(path, "r") as f:
            total += int(f.attrs["n_frames"])
    return total


@pytest.fixture(scope="module")
def reference_run(structures_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("relax_mpi") / "out"
    from tests.conftest import run_python

    result = run_python(["-m", "acnn_mpi", "relax", "--input", structures_file, "--out", out, *COMMON],
                        ranks=2, timeout=600)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.mpi
def test_mpi_relaxes_every_structure_exactly_once(reference_run):
    out, result = reference_run
    data = read_results(out)
    assert sorted(data.structure_id.tolist()) == list(range(500, 500 + N))
    assert _committed_rows(out) == N  # no structure written twice
    assert set(data.status) <= {"converged", "not_converged", "unphysical"}
    assert (data.status == "converged").sum() >= N - 2
    # one shard per rank that got work (the root works too: on a loaded machine it may take all)
    shards = list_shards(out)
    assert {os.path.basename(p)[:8] for p in shards} <= {"rank0000", "rank0001"} and shards
    assert "relax: rank 1 relaxed" in result.stderr and "structures per core-hour" in result.stderr
    assert f"{N}/{N} done in" in result.stderr   # the closing summary
    assert "done (" in result.stderr and "ETA" in result.stderr
    with h5py.File(out / "index.h5") as f:
        assert sorted(f["frames/structure_id"][:].tolist()) == list(range(500, 500 + N))


def test_serial_command_matches(acnn, structures_file, reference_run, tmp_path):
    out = tmp_path / "serial"
    result = acnn(["relax", "--input", structures_file, "--out", out, *COMMON, "--threads", "1"], timeout=600)
    assert result.returncode == 0, result.stderr
    serial, mpi = read_results(out), read_results(reference_run[0])
    a, b = np.argsort(serial.structure_id), np.argsort(mpi.structure_id)
    np.testing.assert_array_equal(serial.structure_id[a], mpi.structure_id[b])
    np.testing.assert_allclose(serial.enthalpy_per_atom[a], mpi.enthalpy_per_atom[b], atol=1e-6)
    # the same command again finds nothing left to do
    again = acnn(["relax", "--input", structures_file, "--out", out, *COMMON, "--threads", "1"], timeout=600)
    assert again.returncode == 0 and f"{N} already done" in again.stderr
    assert _committed_rows(out) == N
    # a different pressure into the same directory is refused
    other = acnn(["relax", "--input", structures_file, "--out", out, "--model", "lj:0.0104,3.4,8.5",
                  "--pressure", "3"], timeout=600)
    assert other.returncode == 2 and "holds results of another job" in other.stderr


@pytest.mark.mpi
def test_killed_job_resumes_to_the_same_results(structures_file, reference_run, tmp_path):
    if not MPIEXEC.exists():
        pytest.skip("no mpiexec")
    out = tmp_path / "killed"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "acnn_mpi", "relax", "--input", str(structures_file),
               "--out", str(out), *COMMON]
    job = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and job.poll() is None:
            try:
                if _committed_rows(out) >= 4:  # some chunks are committed: kill it mid-way
                    break
            except (OSError, KeyError):
                pass  # a shard being created or written right now
            time.sleep(0.05)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    partial = read_results(out)
    assert 0 < len(partial) < N, "the job should have been killed mid-way"
    from tests.conftest import run_python

    resumed = run_python(command[4:], ranks=2, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(partial)} already done" in resumed.stderr
    final, reference = read_results(out), read_results(reference_run[0])
    assert sorted(final.structure_id.tolist()) == list(range(500, 500 + N))
    assert _committed_rows(out) == N  # nothing duplicated, nothing lost
    a, b = np.argsort(final.structure_id), np.argsort(reference.structure_id)
    np.testing.assert_array_equal(final.status[a], reference.status[b])
    np.testing.assert_allclose(final.enthalpy_per_atom[a], reference.enthalpy_per_atom[b], atol=1e-6)
