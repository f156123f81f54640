"""Errors a user can cause, reported as one line by the command line (exit code 2)."""


class UserError(Exception):
    """Bad input: the message names the setting, the value and what is allowed."""
