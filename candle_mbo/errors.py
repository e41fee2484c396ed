"""Errors that end a workflow before it runs anything, reported as one line with exit code 2."""


class UsageError(Exception):
    """Bad input (a file, a line, an option, a value): printed as ``error: <message>``, exit code 2.

    The message names what is wrong and, where it can, what would be right.
    """

    exit_code = 2
