"""The one error every stage of reading a purchase log raises."""

from __future__ import annotations


class DataError(Exception):
    """One-line, user-facing error; the CLI prints `tailor: error: <message>` and exits 2."""
