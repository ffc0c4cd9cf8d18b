"""Errors the kit raises on bad input.

Every error a user can cause derives from :class:`GirlError`; the CLI prints it on one line and
exits with code 2 (``EXIT_USAGE``). The CLI also turns what the machine refuses (a full disk, a
file where a folder should be, no permission: ``OSError``) into one line with exit 2. Any other
exception is a bug in the kit: one line naming a log file that holds the traceback, exit 1
(``EXIT_BUG``). Nothing else in the kit calls ``sys.exit``.
"""
from __future__ import annotations

EXIT_USAGE = 2
EXIT_BUG = 1


class GirlError(Exception):
    """A user-facing error: one line that says what is wrong and how to fix it."""


class DataError(GirlError):
    """A data file is malformed. Names the file, the 1-based line (or, in a JSON list, the 0-based
    index of the record) and the field."""

    def __init__(self, path, line: int | None, field: str | None, message: str, *, record: int | None = None):
        self.path, self.line, self.field, self.message, self.record = str(path), line, field, message, record
        where = self.path if line is None else f"{self.path}:{line}"
        where += "" if record is None else f": record {record}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}".replace(": ", ": ", 1))
