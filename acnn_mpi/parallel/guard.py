"""Run a rank's main function so that a failure on any rank ends the whole job, cleanly.

A user error (bad input) prints one line and exits with code 2; so does a machine error that is
not the program's fault (a full disk, a refused permission), which names the file. Any other
exception prints its traceback with the rank and aborts every rank (MPI_Abort), so a batch job
never hangs with one rank dead and the others waiting in a collective.

Under MPI an error seen by one rank alone is written by that rank as one line, ``error: rank R:
message``, in a single write before MPI_Abort, so it stays whole next to MPICH's abort lines and
other ranks' output; an error raised alike on every rank (``UserError.collective``) is printed once,
by the root, and the ranks exit together without an abort.
"""

from __future__ import annotations

import errno
import re
import sys
import traceback
from typing import Callable

from ..errors import UserError
from .comm import Comm

#: errno values that say the machine refused a write or a read, not that the program is wrong
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                       errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def run_guarded(comm: Comm, main: Callable[[], int]) -> int:
    """Call ``main()`` and turn exceptions into exit codes (serial) or a job-wide abort (MPI)."""
    prefix = f"rank {comm.rank}: " if comm.size > 1 else ""
    try:
        return int(main() or 0)
    except UserError as error:
        collective = error.collective and comm.size > 1
        if comm.is_root or not collective:
            say(f"error: {'' if collective else prefix}{error}")
        if comm.size > 1 and not collective:
            comm.abort(2)
        return 2
    except KeyboardInterrupt:
        say(f"{prefix}interrupted")
        if comm.size > 1:
            comm.abort(130)
        return 130
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - any failure must end every rank
        message = environment_message(error)
        if message is not None:
            say(f"error: {prefix}{message}")
            if comm.size > 1:
                comm.abort(2)
            return 2
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        text = "".join(lines).rstrip("\n")
        if prefix:
            text = "\n".join(f"[{prefix.rstrip(': ')}] {line}" for line in text.splitlines())
        say(f"{text}\nerror: {prefix}{type(error).__name__}: {error} (ending all {comm.size} rank(s))")
        if comm.size > 1:
            comm.abort(1)
        return 1


def say(text: str) -> None:
    """Write ``text`` and a newline to stderr in one write, so that lines from other ranks (and
    MPICH's abort report) cannot land inside it."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def environment_message(error: BaseException) -> str | None:
    """One line for a full disk, a quota, a refused permission or a path in the way, naming the
    file and what to do; None for anything else (a bug, shown with its traceback)."""
    text = str(error)
    number = getattr(error, "errno", None)
    if number is None:  # h5py and torch put the C library's errno into the message
        found = re.search(r"errno = (\d+)", text)
        number = int(found.group(1)) if found else None
        if number is None and "No space left on device" in text:
            number = errno.ENOSPC
    if number not in _ENVIRONMENT_ERRNOS or not isinstance(error, (OSError, RuntimeError)):
        return None
    filename = getattr(error, "filename", None)
    if filename is None:
        found = re.search(r"filename = '([^']+)'", text)
        filename = found.group(1) if found else None
    where = f" ({filename})" if filename else ""
    if number in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if number == errno.ENOSPC else "disk quota exceeded"
        return (f"{what}{where}: free some space and run the same command again; finished work is "
                "kept and it resumes where it stopped")
    if number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not allowed to write or read{where}: fix its permissions or choose another place"
    return f"{filename or 'a path'}: {getattr(error, 'strerror', None) or text}: choose another path"
