"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits non-zero."""


class UserError(Exception):
    """An expected failure with a message that says what went wrong and how to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """Bad command-line usage or unreadable input (exit 2)."""

    exit_code = 2
