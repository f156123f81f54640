"""A small communicator facade over mpi4py, with a serial stand-in of size 1.

``get_world()`` returns MPI's COMM_WORLD only when the process was started by an MPI launcher
(mpiexec/mpirun/srun set PMI_*/PMIX_*/OMPI_* variables), so a plain ``python -m acnn_mpi`` never
initializes MPI.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TypeVar

from ..errors import UserError

T = TypeVar("T")

#: Seconds between a rank's last write and its MPI_Abort. The launcher forwards each rank's stderr
#: through a pipe; an abort handled before that pipe is drained loses the rank's error message
#: (seen once in CI: a failed job with empty stderr), so the message gets time to leave first.
ABORT_GRACE_S = 1.0

#: Environment variables by which MPI launchers (Hydra/MPICH, Open MPI, PMIx, Slurm PMI) mark ranks.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """True when this process looks like one rank of an MPI job (or ACNN_MPI_FORCE_MPI=1)."""
    if os.environ.get("ACNN_MPI_FORCE_MPI") == "1":
        return True
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


#: Variables that say how many ranks the launcher started, most specific first: Hydra/MPICH and
#: PMI-2 (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), a Slurm job step (srun).
_RANK_COUNT_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launcher_ranks(environ=None) -> tuple[int, str] | None:
    """(ranks the launcher started, the variable that says so), or None outside a launcher.

    Read from the environment without initializing MPI; compared with the communicator's size it
    reveals the classic mismatch of an MPI library that does not speak the launcher's protocol
    (the wheel's MPICH under a site ``srun``: N processes, each a world of size 1).
    """
    return _first_number(_RANK_COUNT_VARIABLES, os.environ if environ is None else environ)


#: Variables in which launchers give a process its rank: Hydra/MPICH, PMIx, Open MPI, Slurm.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")


def launcher_rank() -> int:
    """This process's rank as the launcher set it in the environment (0 when not launched)."""
    found = _first_number(_RANK_VARIABLES, os.environ)
    return found[0] if found else 0


def _first_number(names, environ) -> tuple[int, str] | None:
    """(value, name) of the first of ``names`` that holds a whole number in ``environ``."""
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value), name
    return None


def size_mismatch(comm_size: int, environ=None) -> str | None:
    """A warning when the launcher started a different number of ranks than the world has."""
    launched = launcher_ranks(environ)
    if launched is None or launched[0] == comm_size:
        return None
    count, name = launched
    return (f"the launcher started {count} rank(s) ({name}={count}) but this MPI world has "
            f"{comm_size}: mpi4py's MPI library does not match the launcher (each process may run "
            "alone). Launch with the mpiexec of the MPI that mpi4py uses, or build mpi4py against "
            "the site's MPI (README 'Running on a supercomputer'; check with "
            "`python -m acnn_mpi check --env`)")


class Comm:
    """Collective operations the package needs, over an mpi4py communicator or none (serial)."""

    def __init__(self, mpi_comm=None):
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def bcast(self, obj: T, root: int = 0) -> T:
        return obj if self.mpi is None else self.mpi.bcast(obj, root=root)

    def gather(self, obj: T, root: int = 0) -> list[T] | None:
        return [obj] if self.mpi is None else self.mpi.gather(obj, root=root)

    def allgather(self, obj: T) -> list[T]:
        return [obj] if self.mpi is None else self.mpi.allgather(obj)

    def allreduce(self, obj: T) -> T:
        """Sum over ranks (numbers or numpy arrays)."""
        return obj if self.mpi is None else self.mpi.allreduce(obj)

    def barrier(self) -> None:
        if self.mpi is not None:
            self.mpi.Barrier()

    def sleeping_barrier(self, poll_s: float = 0.01) -> None:
        """A barrier that sleeps ``poll_s`` seconds between checks: MPICH's blocking barrier
        busy-spins, taking a core from the ranks still working."""
        if self.mpi is None or self.size == 1:
            return
        import time

        request = self.mpi.Ibarrier()
        while not request.Test():
            time.sleep(poll_s)

    def split(self, color: int) -> "Comm":
        """The ranks of the same ``color`` as a new communicator (ordered by rank); collective.
        Serial: this communicator. Release a split one with :meth:`free`."""
        if self.mpi is None or self.size == 1:
            return self
        return Comm(self.mpi.Split(color, self.rank))

    def free(self) -> None:
        """Release a communicator made by :meth:`split` (not the world)."""
        if self.mpi is not None:
            self.mpi.Free()
            self.mpi = None

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (MPI_Abort, :data:`ABORT_GRACE_S` after the last write); in
        serial, exit the process."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.mpi is not None and self.size > 1:
            time.sleep(ABORT_GRACE_S)
            self.mpi.Abort(code)
        raise SystemExit(code)

    def root_then_bcast(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the root only and give its result (or its exception) to every rank.

        An exception on the root is re-raised on every rank, so all ranks fail the same way
        instead of the others waiting forever.
        """
        outcome: tuple[bool, Any] | None = None
        if self.is_root:
            try:
                outcome = (True, function())
            except BaseException as error:  # noqa: BLE001 - handed to every rank, then raised
                outcome = (False, error)
        ok, value = self.bcast(outcome)
        if not ok:
            if self.size > 1 and isinstance(value, UserError):
                value.collective = True
            raise value
        return value


_WORLD: Comm | None = None
_ASE_SERIAL = False


def _keep_ase_serial() -> None:
    """Stop ASE from turning file I/O and optimizer logs into MPI collectives.

    Once mpi4py is imported, ASE's ``world`` becomes COMM_WORLD: ``ase.io.read`` on one rank then
    broadcasts (and another rank's next ``bcast`` receives it) and ``write``/optimizer logs happen
    on rank 0 only. Here every rank works on its own structures, so ASE must act serially.
    """
    global _ASE_SERIAL
    import ase.parallel

    ase.parallel.world.comm = ase.parallel.DummyMPI()
    _ASE_SERIAL = True


def get_world(*, serial_ase: bool = True) -> Comm:
    """The job's world communicator (mpi4py COMM_WORLD under a launcher, else serial size 1).

    ``serial_ase=False`` leaves ASE (and with it numpy) unimported, for the start-up, which must set
    the BLAS thread variables from the node layout before numpy loads; a later plain call does it.
    """
    global _WORLD
    if _WORLD is None:
        if launched_by_mpi():
            from mpi4py import MPI

            _WORLD = Comm(MPI.COMM_WORLD)
        else:
            _WORLD = Comm(None)
    if serial_ase and _WORLD.mpi is not None and not _ASE_SERIAL:
        _keep_ase_serial()
    return _WORLD
