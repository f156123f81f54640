"""The batch job's end time from Slurm/PBS (faked environments and scheduler output), and the
shutdown that it arms a margin before the end."""

import time
from datetime import datetime

import pytest

from acnn_mpi.campaign import shutdown
from acnn_mpi.parallel.comm import Comm
from acnn_mpi.parallel.walltime import (job_end, parse_clock, parse_qstat_end,
                                        parse_squeue_end)

NOW = 1_800_000_000.0


def no_scheduler(command):
    raise AssertionError(f"no scheduler query expected, got {command}")


def test_durations_and_squeue_times():
    assert parse_clock("24:00:00") == 86400
    assert parse_clock("1-02:03:04") == 93784
    assert parse_clock("30:00") == 1800
    assert parse_clock("N/A") is None
    assert parse_squeue_end("2026-12-01T12:30:00\n") == datetime(2026, 12, 1, 12, 30).timestamp()
    assert parse_squeue_end("N/A") is None and parse_squeue_end("Unknown") is None


def test_qstat_torque_remaining_and_pbs_pro_start_plus_walltime():
    torque = "Job Id: 12.server\n    Walltime.Remaining = 3540\n    job_state = R\n"
    assert parse_qstat_end(torque, NOW) == NOW + 3540
    pbs_pro = ("Job Id: 77.pbs\n    Resource_List.walltime = 02:00:00\n"
               "    resources_used.walltime = 00:10:00\n    stime = Tue Dec  1 10:00:00 2026\n")
    assert parse_qstat_end(pbs_pro, NOW) == datetime(2026, 12, 1, 12, 0).timestamp()
    assert parse_qstat_end("Job Id: 1\n    job_state = Q\n", NOW) is None


def test_environment_first_then_the_scheduler_once():
    assert job_end({}, no_scheduler) is None
    end = job_end({"SLURM_JOB_END_TIME": "1800003600", "SLURM_JOB_ID": "9"}, no_scheduler)
    assert (end.end_s, end.source) == (1800003600.0, "SLURM_JOB_END_TIME")
    end = job_end({"ACNN_MPI_JOB_END_TIME": "1800000100", "SLURM_JOB_END_TIME": "1800003600"},
                  no_scheduler)
    assert end.end_s == 1800000100.0
    asked = []

    def squeue(command):
        asked.append(command)
        return "2026-12-01T12:30:00\n"

    end = job_end({"SLURM_JOB_ID": "4242", "SLURM_JOB_END_TIME": "0"}, squeue)
    assert asked == [["squeue", "-h", "-j", "4242", "-o", "%e"]]
    assert end.end_s == datetime(2026, 12, 1, 12, 30).timestamp() and end.source == "squeue %e"


def test_pbs_qstat_then_pbs_walltime_from_now():
    torque = lambda command: "    Walltime.Remaining = 600\n" if command[:2] == ["qstat", "-f"] else None
    assert job_end({"PBS_JOBID": "12.server"}, torque, now_s=NOW).end_s == NOW + 600
    failing = lambda command: None  # qstat missing or failing
    end = job_end({"PBS_JOBID": "12.server", "PBS_WALLTIME": "7200"}, failing, now_s=NOW)
    assert (end.end_s, end.source) == (NOW + 7200, "PBS_WALLTIME from now")
    assert job_end({"PBS_JOBID": "12.server"}, failing, now_s=NOW) is None


@pytest.fixture
def clean_shutdown():
    shutdown.reset()
    yield
    shutdown.reset()


def test_shutdown_requested_a_margin_before_the_job_end(monkeypatch, clean_shutdown):
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(time.time()) + 100))
    shutdown.install(signals=(), margin_s=30, comm=Comm(None))
    assert not shutdown.requested()           # 100 s left, margin 30 s
    shutdown.reset()
    shutdown.install(signals=(), margin_s=300, comm=Comm(None))
    assert shutdown.requested()               # inside the margin: stop now
    shutdown.reset()
    shutdown.install(signals=(), margin_s=0, comm=Comm(None))
    assert not shutdown.requested()           # margin 0: signals only, the end time is not read


def test_shutdown_without_a_job_waits_for_signals(monkeypatch, clean_shutdown):
    for name in ("SLURM_JOB_END_TIME", "ACNN_MPI_JOB_END_TIME", "SLURM_JOB_ID", "PBS_JOBID"):
        monkeypatch.delenv(name, raising=False)
    shutdown.install(signals=(), comm=Comm(None))
    assert not shutdown.requested()
