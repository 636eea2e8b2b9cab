"""Structured logs: one JSON object per line (or plain text), never a secret.

Lines carry time, level, logger, message and the id of the request being served (``request_id``); access
lines add method, path, endpoint, status and duration_ms. Every line, whatever its format, passes through
``redact``: configured API keys, Redis URL passwords and bearer tokens are replaced by ``***``.

This module must stay free of ``prometheus_client``: gunicorn's master imports it (``logconfig_dict``)
before ``PROMETHEUS_MULTIPROC_DIR`` is prepared.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

_SECRETS: set[str] = set()
#: (cheap substring test on the lower-cased line, pattern, replacement): a pattern runs only if its test hits.
_PATTERNS = (
    ("bearer", re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1***"),
    ("api-key", re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1***"),
    ("://", re.compile(r"(rediss?://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
)
ACCESS_FIELDS = ("method", "path", "endpoint", "status", "duration_ms")


def register_secrets(values: Iterable[str]) -> None:
    """Strings that must never appear in a log line (API keys, passwords); very short ones are ignored."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    """``text`` with registered secrets, bearer tokens and Redis URL passwords replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    lower = text.lower()
    for marker, pattern, replacement in _PATTERNS:
        if marker in lower:
            text = pattern.sub(replacement, text)
    return text


def current_request_id() -> str | None:
    """The id of the request this thread serves (None outside a request, or before Flask is loaded)."""
    flask = sys.modules.get("flask")
    if flask is not None and flask.has_request_context():
        return flask.g.get("request_id")
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (+ access fields, exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "request_id": current_request_id(), "pid": record.process,
        }
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(doc, default=str).decode())


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """Control characters as visible escapes (``\\r``, ``\\n``, ``\\x1b``): one record, one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class TextFormatter(logging.Formatter):
    """The plain format (``TAILOR_LOG_FORMAT=text``), redacted like the JSON one. Control characters of the
    line (a ``%0D%0A`` in a request path, say) are escaped, so a client cannot forge a log line; only a
    traceback, appended after the line, spans several lines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_control(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RepeatLimiter(logging.Filter):
    """Rate-limits repeated warnings: a WARNING with the same logger and message template as one let through
    less than ``interval_s`` ago is dropped and counted; the next one let through says how many were dropped.

    During an outage every request may hit the same failure ("could not commit the idempotency markers"):
    one line per ``interval_s`` tells the story; thousands drown it. Errors and lower levels pass untouched.
    """

    def __init__(self, interval_s: float = 10.0, clock: Any = None) -> None:
        super().__init__()
        import threading
        import time

        self.interval_s = interval_s
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._last: dict[tuple[str, Any], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self._clock()
        with self._lock:
            last, dropped = self._last.get(key, (None, 0))
            if last is not None and now - last < self.interval_s:
                self._last[key] = (last, dropped + 1)
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} similar warnings suppressed in the last {self.interval_s:g}s]"
        return True


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str, fmt: str) -> None:
    """The ``tailor`` loggers write to stderr in ``fmt`` (gunicorn's own: ``gunicorn_conf.logconfig_dict``)."""
    logger = logging.getLogger("tailor")
    logger.setLevel(level.upper())
    handler = next((h for h in logger.handlers if getattr(h, "_tailor", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._tailor = True  # type: ignore[attr-defined]
        handler.addFilter(RepeatLimiter())
        logger.addHandler(handler)
    handler.setFormatter(formatter(fmt))
    logger.propagate = False
