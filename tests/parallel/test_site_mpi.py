"""Slow: acnn_mpi on an MPI other than the wheel's, the two ways the README gives.

1. mpi4py built from source against Debian's Open MPI (``MPICC``) in a scratch venv that reuses
   this Python's packages: ``check --env`` and the tiny campaign under that Open MPI's ``mpirun``;
   the same venv under the wheel's ``mpiexec`` is the launcher/MPI mismatch ``check --env`` reports.
2. The wheel's mpi4py on Debian's MPICH through the MPICH ABI (``MPI4PY_LIBMPI``), as one would
   on Cray MPICH or Intel MPI: ``check --env`` and the tiny campaign under ``mpiexec.mpich``.

Debian's MPIs are installed with apt-get when missing (as root; skipped otherwise). Set
ACNN_OPENMPI_VENV to a folder to keep the built venv between runs (the build takes minutes).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.campaign.test_campaign import TINY, final_hull
from tests.conftest import MPIEXEC, REPO

pytestmark = [pytest.mark.slow, pytest.mark.mpi]
DEBIAN_PACKAGES = ["libopenmpi-dev", "openmpi-bin", "libmpich12", "mpich"]
DEBIAN_MPICH = Path("/usr/lib/x86_64-linux-gnu/libmpich.so.12")


def ensure_debian_mpis() -> None:
    if shutil.which("mpicc.openmpi") and shutil.which("mpiexec.mpich") and DEBIAN_MPICH.exists():
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("needs Debian's Open MPI and MPICH: apt-get install -y " + " ".join(DEBIAN_PACKAGES))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            pytest.skip(f"{' '.join(command)} failed: {done.stderr[-500:]}")


def run(command, env=None, timeout=1800):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=REPO,
                          env=full_env, timeout=timeout)


def openmpi_mpirun(n):
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun.openmpi", *root, "--oversubscribe", "-n", str(n)]


def links_open_mpi(python: Path) -> bool:
    if not python.exists():
        return False
    found = run([python, "-c", "import mpi4py.MPI as m; print(m.__file__)"], timeout=300)
    if found.returncode != 0:
        return False
    ldd = run(["ldd", found.stdout.strip()], timeout=60)
    return "libmpi.so.40" in ldd.stdout


@pytest.fixture(scope="module")
def openmpi_python(tmp_path_factory) -> Path:
    """A venv's python whose mpi4py is built against Debian's Open MPI (built once)."""
    ensure_debian_mpis()
    venv = Path(os.environ.get("ACNN_OPENMPI_VENV") or tmp_path_factory.mktemp("venv") / "openmpi")
    python = venv / "bin" / "python"
    if not links_open_mpi(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
        # Open MPI's lib folder first on the link line: this interpreter's -L<prefix>/lib holds
        # the mpich wheel's libmpi.so, which would otherwise satisfy -lmpi. -O0: the build's
        # minutes are the C compiler optimizing MPI.c; this test needs no speed.
        libdir = run(["mpicc.openmpi", "--showme:libdirs"], timeout=60).stdout.split()[0]
        build = run([python, "-m", "pip", "install", "--ignore-installed", "--no-deps",
                     "--no-binary", "mpi4py", "--no-cache-dir", "mpi4py"],
                    env={"MPICC": "mpicc.openmpi", "LDSHARED": f"mpicc.openmpi -shared -L{libdir}",
                         "CFLAGS": "-O0"}, timeout=3600)
        if build.returncode != 0 and "No matching distribution" in build.stdout + build.stderr:
            pytest.skip("mpi4py's source distribution cannot be downloaded here")
        assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
        assert links_open_mpi(python), "mpi4py did not link against Open MPI's libmpi.so.40"
    return python


@pytest.fixture(scope="module")
def wheel_hull(tmp_path_factory):
    """The tiny campaign's final hull on the wheel's MPICH, 2 ranks."""
    directory = tmp_path_factory.mktemp("wheel")
    done = run([MPIEXEC, "-n", 2, sys.executable, "-m", "acnn_mpi", "run", TINY,
                "--output-dir", directory])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return final_hull(directory)


def test_mpi4py_built_against_open_mpi(openmpi_python, wheel_hull, tmp_path):
    env = run([*openmpi_mpirun(2), openmpi_python, "-m", "acnn_mpi", "check", "--env"], timeout=600)
    assert env.returncode == 0, env.stdout + env.stderr
    assert "MPI library    Open MPI v4" in env.stdout
    assert "libmpi.so.40" in env.stdout and "built from source" in env.stdout
    assert "2 in this MPI world; launcher: OMPI_COMM_WORLD_SIZE=2" in env.stdout
    done = run([*openmpi_mpirun(2), openmpi_python, "-m", "acnn_mpi", "run", TINY,
                "--output-dir", tmp_path])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert final_hull(tmp_path) == wheel_hull


def test_the_wrong_launcher_is_reported(openmpi_python):
    """The Open MPI build under the wheel's (MPICH) mpiexec: two worlds of one rank each."""
    env = run([MPIEXEC, "-n", 2, openmpi_python, "-m", "acnn_mpi", "check", "--env"], timeout=600)
    assert env.returncode == 1, env.stdout + env.stderr
    assert env.stdout.count("the launcher started 2 rank(s) (PMI_SIZE=2) but this MPI world has 1") == 2


def test_wheel_on_debian_mpich_through_the_abi(wheel_hull, tmp_path):
    """MPI4PY_LIBMPI picks the library. Debian names it libmpich.so.12, so a libmpi.so.12 link on
    LD_LIBRARY_PATH stands in for the name Cray MPICH and Intel MPI ship."""
    ensure_debian_mpis()
    libdir = tmp_path / "abi"
    libdir.mkdir()
    (libdir / "libmpi.so.12").symlink_to(DEBIAN_MPICH)
    abi = {"MPI4PY_LIBMPI": str(libdir / "libmpi.so.12"), "LD_LIBRARY_PATH": str(libdir)}
    launch = ["mpiexec.mpich", "-n", 2, sys.executable, "-m", "acnn_mpi"]
    env = run([*launch, "check", "--env"], env=abi, timeout=600)
    assert env.returncode == 0, env.stdout + env.stderr
    [loaded] = [line for line in env.stdout.splitlines() if line.startswith("libmpi loaded")]
    assert str(DEBIAN_MPICH.parent) in loaded and sys.prefix not in loaded
    assert "2 in this MPI world" in env.stdout and "binary wheel, mpich ABI" in env.stdout
    done = run([*launch, "run", TINY, "--output-dir", tmp_path / "out"], env=abi)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert final_hull(tmp_path / "out") == wheel_hull
