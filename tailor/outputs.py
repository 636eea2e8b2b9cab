"""Where a `tailor` command writes its CSV: standard output for ``-``, else a file, with a one-line error for a
path it cannot write."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tailor.errors import CliError


@contextmanager
def output(path: str) -> Iterator[TextIO]:
    """Standard output for ``-``, else the file (created, closed afterwards)."""
    out = sys.stdout if path == "-" else open_output(path)
    try:
        yield out
    finally:
        if out is not sys.stdout:
            out.close()


def open_output(path: str) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror})") from None
