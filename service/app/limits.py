"""Request limits enforced by the app, answered with the API's JSON error body (a WSGI middleware).

gunicorn checks the request line and headers before the app sees a request, and answers over-limit ones
with an HTML page. So gunicorn's own limits are set *above* these (``service.gunicorn_conf``) and the app
enforces the API's limits here, in the error envelope every client parses:

* request line (method, target, protocol) longer than ``MAX_REQUEST_LINE`` (4,094 bytes) -> 414;
* more than ``MAX_HEADER_FIELDS`` (100) header fields, or one longer than ``MAX_HEADER_FIELD`` (8,190
  bytes, name + value) -> 431;
* a body over ``TAILOR_MAX_BODY_BYTES`` -> 413, also when it comes with ``Transfer-Encoding: chunked`` and
  no ``Content-Length`` (Werkzeug would silently cut such a body at the limit): the body is read up to one
  byte past the limit, and handed on with its length when it fits;
* a path or query string that is not UTF-8 once percent-decoded -> 400 (Werkzeug would decode it with
  U+FFFD in place of the bad bytes, so ``/v1/customers/%ff`` and ``/v1/customers/%fe`` would be one customer).

Requests beyond gunicorn's own (higher) limits never reach the app: a reverse proxy in front should
refuse them first (see README "Deployment limits").
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from service.domain.errors import error_document

MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD = 8190
#: gunicorn's limits: above the app's, so the app answers first. The request line is unlimited in gunicorn
#: (0; its largest finite limit, 8190, is below what the documented parameters allow, and gunicorn's answer
#: is HTML): the app refuses it past 4,094 bytes, and the reverse proxy bounds it (README).
GUNICORN_LIMIT_REQUEST_LINE = 0
GUNICORN_LIMIT_REQUEST_FIELDS = 1000
GUNICORN_LIMIT_REQUEST_FIELD_SIZE = 32768

_NON_HTTP_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def _error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
    body = orjson.dumps(error_document(code, message))
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def _utf8(environ: dict[str, Any]) -> bool:
    """Whether the path (percent-decoded by the server, as latin-1 per PEP 3333) and the query are UTF-8."""
    try:
        environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        query = environ.get("QUERY_STRING", "")
        if "%" in query:
            unquote_to_bytes(query.encode("latin-1")).decode("utf-8")
        else:
            query.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


class LimitsMiddleware:
    """Wraps the Flask WSGI app; cheap for ordinary requests (a few length checks)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("RAW_URI")
        if target is None:
            query = environ.get("QUERY_STRING", "")
            target = environ.get("PATH_INFO", "") + ("?" + query if query else "")
        line = len(environ.get("REQUEST_METHOD", "")) + len(target) + len(environ.get("SERVER_PROTOCOL", "")) + 2
        if line > MAX_REQUEST_LINE:
            return _error(start_response, "414 URI Too Long", "uri_too_long",
                          f"the request line is longer than {MAX_REQUEST_LINE} bytes")
        if not _utf8(environ):
            return _error(start_response, "400 Bad Request", "invalid_input",
                          "the path or query string is not valid UTF-8 once percent-decoded")
        fields = 0
        for name, value in environ.items():
            if name.startswith("HTTP_") or name in _NON_HTTP_HEADERS:
                fields += 1
                if len(name) + len(value) > MAX_HEADER_FIELD - 2:
                    return _error(start_response, "431 Request Header Fields Too Large", "headers_too_large",
                                  f"a header field is longer than {MAX_HEADER_FIELD} bytes")
        if fields > MAX_HEADER_FIELDS:
            return _error(start_response, "431 Request Header Fields Too Large", "headers_too_large",
                          f"more than {MAX_HEADER_FIELDS} header fields")
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.max_body + 1)
            if len(body) > self.max_body:
                return _error(start_response, "413 Request Entity Too Large", "payload_too_large",
                              f"the request body is larger than {self.max_body} bytes")
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)
