"""gunicorn's own error answers, in the API's JSON error envelope.

gunicorn answers a request it cannot parse (an invalid header, chunk size, ``Content-Length``, method or HTTP
version, a field past its own limits) by itself, before the app sees it, and it used to answer with an HTML
page: a client that parses ``{"error": {"code", "message", "details"}}`` got something else. gunicorn writes
every such answer through ``gunicorn.util.write_error`` (``Worker.handle_error`` decides the status, the
reason and the message); ``install`` replaces that function in the server's processes with one that writes
the same status, reason and message as JSON. The app's own errors never come here.
"""

from __future__ import annotations

import socket

import gunicorn.util
import orjson

from service.domain.errors import STATUS_CODES, error_document


def error_answer(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP answer (status line, headers, JSON body) to a request the server refused."""
    code = STATUS_CODES.get(status) or reason.strip().lower().replace(" ", "_") or "error"
    body = orjson.dumps(error_document(code, message or reason))
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1", "replace") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature)."""
    gunicorn.util.write_nonblock(sock, error_answer(int(status_int), str(reason), str(mesg)))


def install() -> None:
    """Make gunicorn write its error answers as JSON in this process and the workers it forks."""
    gunicorn.util.write_error = write_json_error
