"""MPI layer under a real `mpiexec -n 2`: collectives, dynamic tasks, clean abort on failure."""

import time

import pytest

from acnn_mpi.parallel.comm import Comm
from acnn_mpi.parallel.tasks import run_dynamic
from tests.conftest import run_python

pytestmark = pytest.mark.mpi


def test_serial_comm_and_tasks():
    comm = Comm(None)
    assert (comm.rank, comm.size, comm.is_root) == (0, 1, True)
    assert comm.root_then_bcast(lambda: 41 + 1) == 42
    seen = []
    done = run_dynamic(comm, [1, 2, 3], lambda t: t * t, lambda t, r, rank: seen.append((t, r, rank)))
    assert done == [(1, 1), (2, 4), (3, 9)] and seen == [(1, 1, 0), (2, 4, 0), (3, 9, 0)]


def test_check_under_mpiexec(acnn):
    result = acnn(["check", "-q", "inputs/demo.yaml"], ranks=2, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("inputs/demo.yaml: ok") == 1  # printed by the root only


def test_bad_input_under_mpiexec_prints_once(acnn, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("elements: [Cu, Qq]\n")
    result = acnn(["check", str(path)], ranks=2, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("unknown element symbol 'Qq'") == 1


DYNAMIC = """
import sys, time
from acnn_mpi.parallel.comm import get_world
from acnn_mpi.parallel.tasks import run_dynamic
comm = get_world()
def work(task):
    time.sleep(0.01 * (task % 3))
    return (task * task, comm.rank)
done = run_dynamic(comm, list(range(40)) if comm.is_root else None, work, root_works={root_works})
if comm.is_root:
    tasks = sorted(t for t, _ in done)
    assert tasks == list(range(40)), tasks
    assert all(r[0] == t * t for t, r in done)
    print("ranks", sorted({{r[1] for _, r in done}}))
"""


@pytest.mark.parametrize("ranks, root_works, expected", [(2, True, "[0, 1]"), (3, False, "[1, 2]")])
def test_dynamic_tasks_every_task_once(tmp_path, ranks, root_works, expected):
    script = tmp_path / "dynamic.py"
    script.write_text(DYNAMIC.format(root_works=root_works))
    result = run_python([script], ranks=ranks, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"ranks {expected}" in result.stdout


FAIL = """
import time
from acnn_mpi.parallel.comm import get_world
from acnn_mpi.parallel.guard import run_guarded
comm = get_world()
def main():
    if comm.rank == 1:
        raise RuntimeError("boom on rank 1")
    time.sleep(0.2)
    comm.barrier()  # rank 0 would wait here forever without the abort
    return 0
raise SystemExit(run_guarded(comm, main))
"""


def test_exception_on_rank_1_ends_both_ranks(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(FAIL)
    start = time.perf_counter()
    result = run_python([script], ranks=2, timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert "rank 1: RuntimeError: boom on rank 1" in result.stderr
    assert elapsed < 20, f"abort took {elapsed:.1f} s"
