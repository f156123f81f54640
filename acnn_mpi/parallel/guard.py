"""Run a rank's main function so that a failure on any rank ends the whole job, cleanly.

A user error (bad input) prints one line and exits with code 2; any other exception prints its
traceback with the rank and aborts every rank (MPI_Abort), so a batch job never hangs with one rank
dead and the others waiting in a collective.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable

from ..errors import UserError
from .comm import Comm

def run_guarded(comm: Comm, main: Callable[[], int]) -> int:
    """Call ``main()`` and turn exceptions into exit codes (serial) or a job-wide abort (MPI)."""
    prefix = f"rank {comm.rank}: " if comm.size > 1 else ""
    try:
        return int(main() or 0)
    except UserError as error:
        collective = error.collective
        if comm.is_root or not collective:
            print(f"error: {prefix if not collective else ''}{error}", file=sys.stderr, flush=True)
        if comm.size > 1 and not collective:
            comm.abort(2)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}interrupted", file=sys.stderr, flush=True)
        if comm.size > 1:
            comm.abort(130)
        return 130
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - any failure must end every rank
        traceback.print_exc()
        print(f"error: {prefix}{type(error).__name__}: {error} (ending all {comm.size} rank(s))",
              file=sys.stderr, flush=True)
        if comm.size > 1:
            comm.abort(1)
        return 1
