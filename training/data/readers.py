"""File formats: CSV (any delimiter, UTF-8 with or without BOM, Latin-1), gzip-compressed CSV and Parquet;
sniffed from the content, never from the file name alone, and fingerprinted for the manifest."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os

import pandas as pd
import pyarrow as pa

from training.data.errors import DataError

_SNIFF_BYTES = 64 * 1024


_HASH_CHUNK = 1 << 20


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def sniff_format(path: str) -> tuple[str, str, str]:
    """(kind, encoding, delimiter) from the first bytes: gzip and Parquet by magic, never by extension."""
    try:
        if not os.path.exists(path):
            raise DataError(f"{path}: file not found")
        if os.path.isdir(path):
            raise DataError(f"{path}: is a directory, not a file")
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or one_line(exc)}") from None
    if not head:
        raise DataError(f"{path}: file is empty")
    if head[:4] == b"PAR1":
        return "parquet", "utf-8", ","
    kind = "csv"
    if head[:2] == b"\x1f\x8b":
        kind = "gzip"
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(_SNIFF_BYTES)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file: {one_line(exc)}") from None
        if not head:
            raise DataError(f"{path}: file is empty (after gzip decompression)")
    _reject_binary(path, head, kind)
    encoding = "utf-8"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the sniff window
            encoding = "cp1252"
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    first = text.splitlines()[0] if text.splitlines() else ""
    sep = max((",", ";", "\t", "|"), key=first.count)
    return kind, encoding, sep if first.count(sep) else ","


_BINARY_MAGIC = {
    b"PK\x03\x04": "a zip archive (or an .xlsx workbook)",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook",
}


def _reject_binary(path: str, head: bytes, kind: str) -> None:
    where = " (inside gzip)" if kind == "gzip" else ""
    expected = "expected CSV text, gzip-compressed CSV or Parquet"
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: file is {what}{where}; {expected}")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: file is UTF-16 text{where}; save it as UTF-8 CSV")
    controls = sum(1 for b in head[:4096] if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in head or controls > 0.05 * min(len(head), 4096):
        raise DataError(f"{path}: binary file{where}, not CSV text; {expected}")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: str, kind: str, encoding: str, sep: str) -> pd.DataFrame:
    """All columns; CSV cells as strings exactly as written (only empty cells are missing)."""
    if kind == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:
            raise DataError(f"{path}: unreadable Parquet file: {one_line(exc)}") from None
        release_memory()  # the reader's decoding buffers
        df.columns = [str(c).strip() for c in df.columns]
        return df.reset_index(drop=True)
    compression = "gzip" if kind == "gzip" else None

    def read(enc: str) -> pd.DataFrame:
        return pd.read_csv(path, engine="pyarrow", dtype=str, sep=sep, compression=compression,
                           encoding=enc, keep_default_na=False, na_values=[""])

    try:
        try:
            df = read(encoding)
        except (ValueError, UnicodeDecodeError) as exc:
            if encoding != "utf-8" or "utf" not in str(exc).lower():
                raise
            try:  # a non-UTF-8 byte beyond the sniffed head: Excel exports are cp1252
                df = read("cp1252")
            except (ValueError, UnicodeDecodeError):
                df = read("latin-1")  # decodes any byte
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except Exception as exc:
        line = ragged_line(path, kind, encoding, sep)
        where = f" (line {line})" if line is not None else ""
        raise DataError(f"{path}: not a readable CSV file{where}: {one_line(exc)}") from None
    release_memory()  # the reader's buffers
    # A byte-order mark is dropped even when the rest of the file turned out not to be UTF-8 (then it was
    # decoded as three cp1252 / Latin-1 characters).
    df.columns = [str(c).strip().lstrip("\ufeff").removeprefix("\u00ef\u00bb\u00bf").strip() for c in df.columns]
    return df


def file_line(path: str, kind: str, encoding: str, sep: str, row: int) -> int:
    """1-based line of data row ``row`` (0-based), header = line 1; exact with blank lines and quoted
    newlines. Only used on the error path, so a slow csv-module scan is fine."""
    try:
        enc = "utf-8-sig" if encoding == "utf-8" else encoding
        raw = gzip.open(path, "rb") if kind == "gzip" else open(path, "rb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding=enc, errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            seen_header, index, previous = False, -1, 0
            for record in reader:
                start, previous = previous + 1, reader.line_num
                if not record:  # blank line: skipped by the reader, as pyarrow does
                    continue
                if not seen_header:
                    seen_header = True
                    continue
                index += 1
                if index == row:
                    return start
    except (OSError, csv.Error, UnicodeError, EOFError):
        pass
    return row + 2


def ragged_line(path: str, kind: str, encoding: str, sep: str) -> int | None:
    """1-based line where the first record whose number of fields differs from the header's starts (an
    unclosed quote runs to the end of the file as one record), or None. Error path only: a csv-module scan."""
    try:
        enc = "utf-8-sig" if encoding == "utf-8" else encoding
        raw = gzip.open(path, "rb") if kind == "gzip" else open(path, "rb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding=enc, errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            width, previous = None, 0
            while True:
                start = previous + 1
                try:
                    record = next(reader)
                except StopIteration:
                    return None
                except csv.Error:
                    return start
                previous = reader.line_num
                if not record:
                    continue
                if width is None:
                    width = len(record)
                elif len(record) != width:
                    return start
    except (OSError, UnicodeError, EOFError):
        return None


def release_memory() -> None:
    """Hand memory Arrow has freed back to the system.

    Arrow's allocator keeps freed blocks for reuse, so without this the raw table's few hundred megabytes stay
    resident while NumPy allocates the output next to them.
    """
    pa.default_memory_pool().release_unused()
