"""Errors that end a command with a one-line message and a documented exit code.

Exit codes (docs/cli.md): 0 success, 1 a check or verification failed, 2 usage or input
error (including an unreachable database or a missing keyring), 3 authentication or
permission refused, 4 conflict (someone else decided first).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_CONFLICT = 4


class PolysecError(Exception):
    """An expected failure: shown as one line, never as a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(PolysecError):
    """Bad input or configuration: a file, a URL, an argument."""

    exit_code = EXIT_USAGE


class CheckFailed(PolysecError):
    """A verification or integrity check found a problem."""

    exit_code = EXIT_CHECK_FAILED


class RefusedError(PolysecError):
    """Authentication or permission refused (also: a keyring that others can read)."""

    exit_code = EXIT_REFUSED


class ConflictError(PolysecError):
    """Someone else acted first."""

    exit_code = EXIT_CONFLICT
