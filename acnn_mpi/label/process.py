"""Running an external calculation: clean environment, own process group, hard time limit.

A DFT code started from a rank of an MPI job must not believe it is that rank: the launcher's
variables (``PMI_RANK``, ``PMI_FD``, ``OMPI_COMM_WORLD_RANK``, ``SLURM_PROCID``...) would make an
MPI program join, or wait for, the parent's job instead of starting its own. :func:`child_environment`
strips them and keeps what a nested launch needs (``SLURM_JOB_ID``, ``SLURM_NODELIST``, the user's
``OMPI_MCA_btl``/``I_MPI_*``/``MPICH_*`` tuning...).

:func:`run_command` runs a shell command in its own session (process group) with stdout and stderr
in a log file; past the time limit the whole group (shell, ``mpirun``, the ranks it forked) gets
SIGTERM, then SIGKILL a few seconds later.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Optional

#: Prefixes of variables by which launchers tell a process it is a rank (stripped from children).
_RANK_PREFIXES = (
    "PMI_", "PMIX_", "PMI2_",          # PMI-1/2 (MPICH Hydra, Intel MPI, Cray PMI, Slurm pmi2), PMIx
    "HYDRA_", "HYDI_",                 # MPICH/Intel Hydra proxy
    "OMPI_", "ORTE_", "PRTE_", "OPAL_",  # Open MPI (see _KEEP_OMPI_MCA)
    "MV2_COMM_WORLD_",                 # MVAPICH2
    "PALS_", "ALPS_APP_",              # HPE/Cray PALS and ALPS
    "MPIEXEC_", "MPIRUN_",
)
#: Exact launcher variables without a unique prefix.
_RANK_NAMES = {
    "MPI_LOCALNRANKS", "MPI_LOCALRANKID",          # Hydra
    "ACNN_MPI_FORCE_MPI",                         # this package's own "I am a rank" switch
    # Slurm: a job step's task variables (srun sets them per task); job-level ones are kept.
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_TASK_PID", "SLURM_GTIDS",
    "SLURM_STEPID", "SLURM_STEP_ID", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES",
    "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_LAUNCHER_PORT",
    "SLURM_STEP_RESV_PORTS", "SLURM_SRUN_COMM_HOST", "SLURM_SRUN_COMM_PORT",
    "SLURM_LAUNCH_NODE_IPADDR", "SLURM_PMI_KVS_NO_DUP_KEYS", "SLURM_PMIXP_ABORT_AGENT_PORT",
    "SLURM_PMIX_MAPPING_SERV", "SLURM_MPI_TYPE", "SLURM_STEP_GPUS", "SLURM_CPU_BIND",
    "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE", "SLURM_DISTRIBUTION",
}
#: Open MPI MCA parameters are user tuning (kept) unless they describe the parent's launch.
_OMPI_LAUNCH_MCA = re.compile(r"^OMPI_MCA_(ess|orte|prte|pmix|rte|hnp|initial_wdir|num_procs|"
                              r"mpi_yield_when_idle|ompi_ess|schizo|plm|ras|routed|oob|state)")


def is_rank_variable(name: str) -> bool:
    """True for an environment variable that marks a process as one rank of an MPI job."""
    if name in _RANK_NAMES:
        return True
    if name.startswith("OMPI_MCA_"):
        return bool(_OMPI_LAUNCH_MCA.match(name))
    if name.startswith("PMIX_MCA_"):
        return False
    return name.startswith(_RANK_PREFIXES)


def child_environment(*, inherit_mpi_env: bool = False, extra: Optional[Mapping] = None,
                      base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment for a child calculation: ``base`` (os.environ) minus rank variables, plus
    ``extra``. With ``inherit_mpi_env`` nothing is stripped."""
    env = dict(os.environ if base is None else base)
    if not inherit_mpi_env:
        env = {k: v for k, v in env.items() if not is_rank_variable(k)}
    for key, value in (extra or {}).items():
        env[str(key)] = str(value)
    return env


@dataclass
class ProcessOutcome:
    returncode: Optional[int]   # None when killed on timeout
    timed_out: bool
    wall_time: float
    log_path: str


def run_command(command, *, cwd: str, timeout: float, env: Mapping[str, str], log_path: str,
                shell: bool = True, kill_grace: float = 3.0) -> ProcessOutcome:
    """Run ``command`` in ``cwd`` in a new process group; stdout+stderr go to ``log_path``.

    Past ``timeout`` seconds the group gets SIGTERM and, ``kill_grace`` s later, SIGKILL.
    """
    start = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, shell=shell, cwd=cwd, env=dict(env), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = None
            kill_group(process, kill_grace)
        except BaseException:
            kill_group(process, kill_grace)   # interrupted (Ctrl-C, SIGTERM): leave nothing behind
            raise
        finally:
            # grandchildren that outlived a finished shell (e.g. a background daemon) go too
            _signal_group(process.pid, signal.SIGKILL)
    return ProcessOutcome(returncode, timed_out, time.monotonic() - start, log_path)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group(process: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the process group of ``process``, then SIGKILL it after ``grace`` seconds."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass


def tail(path: str, lines: int = 40, max_bytes: int = 65536) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
