"""Errors the kit raises on bad input.

Every error a user can cause derives from :class:`GirlError`; the CLI prints it on one line and
exits with code 2 (``EXIT_USAGE``). Nothing else in the kit calls ``sys.exit``.
"""
from __future__ import annotations

EXIT_USAGE = 2


class GirlError(Exception):
    """A user-facing error: one line that says what is wrong and how to fix it."""


class DataError(GirlError):
    """A data file is malformed. Names the file, the 1-based line and the field."""

    def __init__(self, path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}".replace(": ", ": ", 1))
