"""`check --env`: the MPI library, ranks per node, threads, devices; a launcher/MPI rank-count
mismatch is a warning and exit code 1."""

import pytest

from acnn_mpi.parallel.comm import launcher_ranks, size_mismatch
from acnn_mpi.parallel.environment import loaded_mpi_libraries


def test_launcher_rank_count_from_the_environment():
    assert launcher_ranks({}) is None
    assert launcher_ranks({"PMI_SIZE": "8", "SLURM_STEP_NUM_TASKS": "8"}) == (8, "PMI_SIZE")
    assert launcher_ranks({"SLURM_STEP_NUM_TASKS": "192"}) == (192, "SLURM_STEP_NUM_TASKS")
    assert size_mismatch(8, {"PMI_SIZE": "8"}) is None
    assert size_mismatch(1, {}) is None
    warning = size_mismatch(1, {"SLURM_STEP_NUM_TASKS": "192"})
    assert "started 192 rank(s)" in warning and "has 1" in warning


def test_loaded_mpi_libraries_from_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2\n"
        "7f03-7f04 r-xp 00000000 08:01 3 /opt/cray/pe/lib64/libmpi.so.12\n"
        "7f04-7f05 rw-p 00000000 00:00 0\n")
    assert loaded_mpi_libraries(str(maps)) == ["/opt/cray/pe/lib64/libmpi.so.12",
                                               "/usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2"]


@pytest.mark.mpi
def test_check_env_under_mpiexec(acnn):
    result = acnn(["check", "--env", "tests/campaign/tiny.yaml"], ranks=2, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("# acnn_mpi environment") == 1                       # the root prints
    assert "MPI library" in out and "MPI_THREAD_" in out and "libmpi loaded" in out
    assert "2 in this MPI world; launcher: PMI_SIZE=2" in out
    assert "2 rank(s) on 1 node(s), 2 per node" in out
    assert "model.device auto: cpu ×2 over 2 rank(s)" in out
    assert "WARNING" not in out
    assert "2 rank(s) on 1 node(s), 2 per node" in result.stderr          # the start-up log line


def test_check_env_warns_of_several_size_one_worlds(acnn):
    """What a site srun does to an MPI it cannot talk to: N processes, each MPI world of size 1."""
    result = acnn(["check", "--env"], env={"SLURM_STEP_NUM_TASKS": "4"}, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "WARNING" in result.stdout and "(SLURM_STEP_NUM_TASKS=4)" in result.stdout
    assert "this MPI world has 1" in result.stderr                        # and at start-up


def test_check_without_file_or_env_is_a_user_error(acnn):
    result = acnn(["check"], timeout=60)
    assert result.returncode == 2
    assert "name a campaign file" in result.stderr
