"""Errors that end a workflow with one line: bad input before anything runs (exit code 2), and a rank lost
while the job ran (exit code 1)."""


class UsageError(Exception):
    """Bad input (a file, a line, an option, a value): printed as ``error: <message>``, exit code 2.

    The message names what is wrong and, where it can, what would be right.
    """

    exit_code = 2


class RankLost(RuntimeError):
    """A worker rank went silent past its liveness deadline while it ran something. Everything is journaled
    when this is raised (the message says how to continue); the job then ends every rank at once (MPI_Abort),
    since the silent one may never answer a stop. Exit code 1."""
