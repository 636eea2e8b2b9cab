"""Limits (issue 12.4), against real gunicorn (`tailor serve`) where gunicorn is involved: over-limit bodies
however sent, the Bearer scheme, ASCII digits, log lines that cannot be forged, request-line and header
limits answered with the API's JSON error body."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from service.app.logs import TextFormatter
from tests.service_helpers import KEYS, ROOT, ApiClient, Models, assert_error, served_api

pytest_plugins = ["tests.service_helpers"]

MAX_BODY = 4096


@pytest.fixture(scope="module")
def server(models: Models, redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_api(redis_server.url, models.retail.path, tmp_path_factory.mktemp("limits") / "gunicorn.log",
                    workers=1, TAILOR_LOG_LEVEL="warning", TAILOR_MAX_BODY_BYTES=str(MAX_BODY),
                    TAILOR_LOG_FORMAT="text") as base:
        yield base


def raw(base: str, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, return (status, headers, body) of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
            length = headers.get("Content-Length")
            if length is not None and len(body) >= int(length):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    return status, headers, body


def json_error(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> None:
    assert status == expected, body[:300]
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:300])
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error


AUTH = f"Authorization: Bearer {KEYS['read']}\r\n".encode()


def test_over_limit_body_with_content_length_is_413_json(server: str) -> None:
    body = b"[" + b" " * (MAX_BODY + 10) + b"]"
    status, headers, answer = raw(server, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + AUTH +
                                  b"Content-Type: application/json\r\nConnection: close\r\n"
                                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    json_error(status, headers, answer, 413, "payload_too_large")


def test_over_limit_chunked_body_is_413_json(server: str) -> None:
    chunk = b"[" + b" " * (MAX_BODY * 3) + b"]"
    payload = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
               f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
    status, headers, answer = raw(server, payload)
    json_error(status, headers, answer, 413, "payload_too_large")


def test_small_chunked_body_is_accepted(server: str) -> None:
    chunk = json.dumps([{"event_id": "ch-1", "customer_id": "c", "type": "click",
                         "timestamp": "2011-12-09T10:00:00Z"}]).encode()
    payload = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
               f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
    status, _, answer = raw(server, payload)
    assert status == 200 and json.loads(answer)["accepted"] == 1


def test_request_line_over_the_api_limit_is_414_json(server: str) -> None:
    status, headers, answer = raw(server, b"GET /v1/popular?n=5&x=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n" +
                                  AUTH + b"Connection: close\r\n\r\n")
    json_error(status, headers, answer, 414, "uri_too_long")


def test_too_many_headers_is_431_json(server: str) -> None:
    extra = b"".join(f"X-Extra-{i}: {i}\r\n".encode() for i in range(120))
    status, headers, answer = raw(server, b"GET /v1/popular HTTP/1.1\r\nHost: x\r\n" + AUTH + extra +
                                  b"Connection: close\r\n\r\n")
    json_error(status, headers, answer, 431, "headers_too_large")


def test_header_field_over_the_api_limit_is_431_json(server: str) -> None:
    status, headers, answer = raw(server, b"GET /v1/popular HTTP/1.1\r\nHost: x\r\n" + AUTH +
                                  b"X-Big: " + b"b" * 9000 + b"\r\nConnection: close\r\n\r\n")
    json_error(status, headers, answer, 431, "headers_too_large")


def test_ordinary_requests_still_pass(server: str) -> None:
    status, _, answer = raw(server, b"GET /v1/popular?n=3 HTTP/1.1\r\nHost: x\r\n" + AUTH +
                            b"Connection: close\r\n\r\n")
    assert status == 200 and len(json.loads(answer)["items"]) == 3


@pytest.mark.parametrize("header", [f"Basic {KEYS['read']}", KEYS["read"], f"Token {KEYS['read']}"])
def test_authorization_requires_the_bearer_scheme(header: str, make_app: Callable[..., Flask], retail) -> None:
    api = ApiClient(make_app(), key=None)
    assert_error(api.get("/v1/popular", headers={"Authorization": header}), 401, "unauthorized")
    public = ApiClient(make_app(TAILOR_PUBLIC_READ="true"), key=None)
    assert_error(public.get("/v1/popular", headers={"Authorization": header}), 401, "unauthorized")
    assert api.get("/v1/popular", headers={"X-API-Key": KEYS["read"]}).status_code == 200
    assert api.get("/v1/popular", headers={"Authorization": f"Bearer {KEYS['read']}"}).status_code == 200


@pytest.mark.parametrize("value", ["５", "1٠", "²", "1_0", " 5", "+5"])
def test_numbers_are_ascii_digits_only(value: str, api: ApiClient) -> None:
    assert_error(api.get("/v1/popular", query_string={"n": value}), 400, "invalid_input")
    assert api.get("/v1/popular?n=5").status_code == 200


def test_text_logs_escape_control_characters() -> None:
    record = logging.LogRecord("tailor.access", logging.INFO, __file__, 1, "GET %s 404", ("/x\r\nFAKE 200 ok\x1b[2J",),
                               None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\\r\\nFAKE" in line


def test_a_crlf_in_the_path_cannot_forge_a_log_line(server: str, tmp_path) -> None:
    status, _, _ = raw(server, b"GET /v1/items/x%0D%0AFORGED%20line/similar HTTP/1.1\r\nHost: x\r\n" + AUTH +
                       b"Connection: close\r\n\r\n")
    assert status in (400, 404)


def test_beyond_gunicorn_limits_gunicorn_answers_in_json(server: str) -> None:
    """Past gunicorn's own (higher) limits gunicorn answers before the app, in the same JSON envelope; README
    "Deployment limits" tells the reverse proxy to refuse such requests first. This pins gunicorn's limits there."""
    from service.app.limits import GUNICORN_LIMIT_REQUEST_FIELD_SIZE

    status, headers, answer = raw(server, b"GET /v1/popular HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                  b"b" * GUNICORN_LIMIT_REQUEST_FIELD_SIZE + b"\r\nConnection: close\r\n\r\n")
    json_error(status, headers, answer, 431, "headers_too_large")
    long_line, line_headers, line_answer = raw(server, b"GET /v1/popular?x=" + b"a" * 20000 +
                                               b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    json_error(long_line, line_headers, line_answer, 414, "uri_too_long")
    readme = (ROOT / "README.md").read_text()
    assert "large_client_header_buffers" in readme and f"{GUNICORN_LIMIT_REQUEST_FIELD_SIZE:,}" in readme


POPULAR = b"GET /v1/popular HTTP/1.1\r\nHost: x\r\n" + AUTH
EVENTS = b"POST /v1/events HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: application/json\r\n"


@pytest.mark.parametrize(("payload", "status", "code"), [
    (POPULAR + b"X-Bad: a\x00b\r\n\r\n", 400, "invalid_input"),
    (POPULAR + b"Bad Name: x\r\n\r\n", 400, "invalid_input"),
    (POPULAR + b"X-Folded: a\r\n b\r\n\r\n", 400, "invalid_input"),
    (EVENTS + b"Content-Length: -1\r\n\r\n", 400, "invalid_input"),
    (EVENTS + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]", 400, "invalid_input"),
    (EVENTS + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid_input"),
    (EVENTS + b"Transfer-Encoding: gzip\r\n\r\n", 400, "invalid_input"),
    (b"G@T /v1/popular HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_input"),
    (b"GET /v1/popular HTTP/9.9\r\nHost: x\r\n\r\n", 400, "invalid_input"),
    (b"GET /v1/popular\r\nHost: x\r\n\r\n", 400, "invalid_input"),
], ids=["nul-in-header", "space-in-header-name", "obsolete-folding", "negative-length", "two-lengths",
        "bad-chunk-size", "unknown-transfer-coding", "bad-method", "bad-version", "no-version"])
def test_requests_gunicorn_cannot_parse_get_the_json_error_body(server: str, payload: bytes, status: int,
                                                                 code: str) -> None:
    """gunicorn refuses these before the app sees them; the answer is still the API's JSON envelope, with
    gunicorn's reason as the message (``service.app.server_errors``)."""
    answer_status, headers, answer = raw(server, payload)
    json_error(answer_status, headers, answer, status, code)
    assert json.loads(answer)["error"]["message"]
    after, _, _ = raw(server, POPULAR + b"Connection: close\r\n\r\n")
    assert after == 200, "the worker still serves"


def test_server_error_answers_map_every_status_to_a_code() -> None:
    """Statuses gunicorn may use that the app never does still get a stable code, and an unknown one its reason."""
    from service.app.server_errors import error_answer

    for status, reason, code in [(501, "Not Implemented", "not_implemented"), (417, "Expectation Failed",
                                 "expectation_failed"), (500, "Internal Server Error", "internal_error"),
                                 (418, "I'm A Teapot", "i'm_a_teapot")]:
        head, _, body = error_answer(status, reason, "").partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"Content-Type: application/json" in head
        assert json.loads(body) == {"error": {"code": code, "message": reason, "details": None}}


@pytest.mark.parametrize("target", [b"/v1/customers/%ff%fe/recommendations", b"/v1/items/%C3%28/similar",
                                    b"/v1/popular?country=%C3%28", b"/v1/popular?country=\xff"])
def test_a_path_or_query_that_is_not_utf8_is_400(server: str, target: bytes) -> None:
    """Werkzeug would turn the bad bytes into U+FFFD: two different ids would read as one customer."""
    status, headers, answer = raw(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + AUTH +
                                  b"Connection: close\r\n\r\n")
    json_error(status, headers, answer, 400, "invalid_input")  # a raw byte: gunicorn refuses the line itself


def test_utf8_ids_in_paths_and_queries_still_pass(api: ApiClient) -> None:
    assert api.get("/v1/customers/%F0%9F%98%80/recommendations").get_json()["customer_id"] == "\U0001F600"
    assert api.get("/v1/popular?country=united%20kingdom&n=2").status_code == 200
    assert api.get("/v1/popular?country=%C3%A9&n=2").status_code == 200
