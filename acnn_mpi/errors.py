"""Errors a user can cause, reported as one line by the command line (exit code 2)."""

from contextlib import contextmanager


class UserError(Exception):
    """Bad input: the message names the setting, the value and what is allowed.

    ``collective`` marks an error raised identically on every MPI rank (the root prints it once and
    the ranks exit together); an error on one rank alone aborts the job.
    """

    def __init__(self, message: str, *, collective: bool = False):
        super().__init__(message)
        self.collective = collective


class DamagedFileError(UserError, ValueError):
    """A file this program wrote (a checkpoint, a model, a store) that cannot be read back: the
    message names the file, what is wrong and how to go on. A ValueError too, so that code which
    tries one reader after another treats it as "not this kind of file"."""


@contextmanager
def naming_file(path):
    """Give ``path`` to an OSError raised inside that names no file (a write into an open handle,
    e.g. on a full disk, names none), so that its one-line report can say which file."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
