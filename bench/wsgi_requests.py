"""WSGI requests for the in-process benchmarks (bench/hot_path.py, bench/instructions.py,
bench/ingest_latency.py): no Tailor import here, so a benchmark can build the same requests for the code of
another checkout."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable

import numpy as np


def environ(method: str, path: str, query: str = "", body: bytes = b"") -> dict:
    """A WSGI environ of one request (no HTTP server in between)."""
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "bench",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json" if body else "", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


def call(app, env: dict) -> bytes:
    """The body of ``app``'s answer to ``env``; anything but a 200 is an error."""
    status: list[str] = []
    body = b"".join(app(env, lambda s, h, exc_info=None: status.append(s)))
    if not status[0].startswith("200"):
        raise RuntimeError(f"{env['PATH_INFO']}: {status[0]} {body[:300]!r}")
    return body


def requests_for(name: str, customers: np.ndarray, items: np.ndarray, rng: np.random.Generator,
                 events_per_batch: int = 10, page_size: int = 20) -> Callable[[], dict]:
    """A maker of WSGI environs for one endpoint, customers and items drawn from ``rng``."""
    if name == "healthz":
        return lambda: environ("GET", "/healthz")
    if name == "customer":
        return lambda: environ("GET", f"/v1/customers/{rng.choice(customers)}/recommendations", "n=10")
    if name == "similar":
        return lambda: environ("GET", f"/v1/items/{rng.choice(items)}/similar", "n=10")
    if name == "basket":
        return lambda: environ("POST", "/v1/recommendations", body=json.dumps(
            {"items": rng.choice(items, 3).tolist(), "n": 10}).encode())
    if name == "rank":
        return lambda: environ("POST", f"/v1/customers/{rng.choice(customers)}/rank", body=json.dumps(
            {"items": rng.choice(items, page_size, replace=False).tolist()}).encode())
    if name == "events":
        def events() -> dict:
            batch = [{"event_id": f"e{rng.integers(1 << 62)}", "customer_id": str(rng.choice(customers)),
                      "item_id": str(rng.choice(items)), "type": "view", "timestamp": "2011-12-09T12:00:00Z"}
                     for _ in range(events_per_batch)]
            return environ("POST", "/v1/events", body=json.dumps({"events": batch}).encode())
        return events
    raise ValueError(name)
