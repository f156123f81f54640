"""When the batch job ends: its end time from the scheduler, so the campaign can stop before it.

Sources, first found wins (times are Unix epoch seconds):

- ``ACNN_MPI_JOB_END_TIME``: set by hand (any scheduler; also how tests fake a job);
- Slurm: ``SLURM_JOB_END_TIME`` (in the job's environment since Slurm 20.11), else
  ``squeue -h -j $SLURM_JOB_ID -o %e`` (the end time in local ISO form);
- PBS Pro / OpenPBS / Torque: ``qstat -f $PBS_JOBID``: Torque's ``Walltime.Remaining`` (seconds),
  else ``Resource_List.walltime`` from ``stime`` (the start); else Torque's ``PBS_WALLTIME``
  (seconds of walltime), counted from when it is read: a late estimate, which the margin covers.

Only the root asks the scheduler (one ``squeue`` per job, not one per rank).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Optional

#: how long a scheduler query may take before it is given up, s
QUERY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class JobEnd:
    """end_s: the job's end, Unix epoch seconds; source: where it was read (for the log)."""

    end_s: float
    source: str


Runner = Callable[[list[str]], Optional[str]]


def _run(command: list[str]) -> Optional[str]:
    """stdout of ``command``, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_clock(text: str) -> Optional[float]:
    """Seconds of ``[[DD-]HH:]MM:SS`` or ``HH:MM:SS`` (PBS/Slurm durations), None if not one."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text.strip())
    if not match:
        return None
    parts = [int(p) for p in match.group(2).split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return float(int(match.group(1) or 0) * 86400 + hours * 3600 + minutes * 60 + seconds)


def parse_squeue_end(text: str) -> Optional[float]:
    """The epoch of ``squeue -o %e`` output ("2026-12-01T12:00:00", local time), None for
    "N/A"/"Unknown"/empty."""
    text = text.strip()
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def parse_qstat_end(text: str, now_s: float) -> Optional[float]:
    """The job's end from ``qstat -f`` output: ``Walltime.Remaining`` (Torque) or
    ``Resource_List.walltime`` + ``stime`` (PBS Pro/OpenPBS, start in ctime form, local time)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            fields[key.strip()] = value.strip()
    remaining = fields.get("Walltime.Remaining", "")
    if remaining.isdigit():
        return now_s + int(remaining)
    walltime = parse_clock(fields.get("Resource_List.walltime", ""))
    start = fields.get("stime")
    if walltime is None or not start:
        return None
    try:
        started = datetime.strptime(" ".join(start.split()), "%a %b %d %H:%M:%S %Y").timestamp()
    except ValueError:
        return None
    return started + walltime


def job_end(environ: Optional[Mapping[str, str]] = None, run: Runner = _run,
            now_s: Optional[float] = None) -> Optional[JobEnd]:
    """The end of the batch job this process runs in, or None (no scheduler, no limit)."""
    environ = os.environ if environ is None else environ
    now_s = time.time() if now_s is None else now_s
    for name in ("ACNN_MPI_JOB_END_TIME", "SLURM_JOB_END_TIME"):
        value = environ.get(name, "").strip()
        if value:
            try:
                end = float(value)
            except ValueError:
                continue
            if end > 0:  # 0: no limit
                return JobEnd(end, name)
    if environ.get("SLURM_JOB_ID"):
        output = run(["squeue", "-h", "-j", environ["SLURM_JOB_ID"], "-o", "%e"])
        end = parse_squeue_end(output.splitlines()[0]) if output else None
        if end is not None:
            return JobEnd(end, "squeue %e")
    if environ.get("PBS_JOBID"):
        output = run(["qstat", "-f", environ["PBS_JOBID"]])
        end = parse_qstat_end(output, now_s) if output else None
        if end is not None:
            return JobEnd(end, "qstat -f")
        walltime = environ.get("PBS_WALLTIME", "").strip()
        if walltime.isdigit():
            return JobEnd(now_s + int(walltime), "PBS_WALLTIME from now")
    return None
