"""Fixtures and helpers of the API tests: real models trained with the real pipeline, a real Redis.

Models are trained once per test session (per xdist worker) into a temporary directory and published
into the fresh Redis of each test, exactly as ``tailor train`` + ``tailor publish`` would.
Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from werkzeug.test import TestResponse

from scoring.artifact import Artifact, read_artifact, write_artifact
from service import create_app
from training.data import load_purchase_log
from training.pipeline import PhaseTimer, train_artifact
from training.publish import publish_model

ROOT = Path(__file__).resolve().parent.parent
RETAIL_CSV = ROOT / "data" / "sample" / "online_retail_sample.csv"
GENERIC_CSV = ROOT / "data" / "sample" / "generic_sample.csv"
#: An item-to-item model: every code path (reasons, similar items, session scoring) has something to show.
ALGORITHM = "item-knn"
KEYS = {"read": "read-key-0123456789", "marketing": "marketing-key-0123456789", "admin": "admin-key-0123456789"}
API_KEYS = ",".join(f"{key}:{scope}" for scope, key in KEYS.items())


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    artifact: Artifact

    @property
    def version(self) -> str:
        return self.artifact.version

    def customer_items(self, customer_id: str) -> set[str]:
        row = int(np.flatnonzero(self.artifact.customer_ids == customer_id)[0])
        return {str(self.artifact.item_ids[i]) for i in self.artifact.history.items_of(row)}

    def busiest_customer(self) -> str:
        return str(self.artifact.customer_ids[int(self.artifact.customers.orders.argmax())])

    def popular_items(self) -> list[str]:
        return [str(self.artifact.item_ids[i]) for i in self.artifact.popular["global"]["items"]]


@dataclass(frozen=True)
class Models:
    retail: TrainedModel  # item-knn on the Online Retail sample
    retail_popular: TrainedModel  # a second version of the same data (popularity model): swap target
    generic: TrainedModel  # the generic sample, which has categories


def train(data: Path, fmt: str, algorithm: str, out: Path) -> TrainedModel:
    log = load_purchase_log(data, fmt=fmt)
    artifact = train_artifact(log, algorithm, {}, timer=PhaseTimer(quiet=True))
    write_artifact(out, artifact)
    return TrainedModel(out, read_artifact(out))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("models")
    return Models(
        retail=train(RETAIL_CSV, "online-retail", ALGORITHM, root / "retail"),
        retail_popular=train(RETAIL_CSV, "online-retail", "popular", root / "retail-popular"),
        generic=train(GENERIC_CSV, "generic", ALGORITHM, root / "generic"),
    )


@pytest.fixture(scope="session")
def retail_hybrid(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The default algorithm on the retail sample (its dense EASE part has the partial re-ranking path)."""
    return train(RETAIL_CSV, "online-retail", "hybrid", tmp_path_factory.mktemp("hybrid") / "model")


@pytest.fixture
def retail(models: Models, redis_client: redis.Redis) -> TrainedModel:
    """The retail model, published and active in this test's (empty) Redis."""
    publish_model(redis_client, models.retail.path)
    return models.retail


class ApiClient:
    """Flask test client that sends the read key unless told otherwise (``key=None`` sends none)."""

    def __init__(self, app: Flask, key: str | None = KEYS["read"]) -> None:
        self.app = app
        self.client = app.test_client()
        self.key = key

    def _headers(self, key: str | bool | None, headers: dict[str, str] | None) -> dict[str, str]:
        key = self.key if key is True else key
        out = dict(headers or {})
        if key:
            out.setdefault("Authorization", f"Bearer {key}")
        return out

    def get(self, url: str, *, key: str | bool | None = True, headers: dict[str, str] | None = None,
            **kwargs: Any) -> TestResponse:
        return self.client.get(url, headers=self._headers(key, headers), **kwargs)

    def post(self, url: str, *, key: str | bool | None = True, headers: dict[str, str] | None = None,
             **kwargs: Any) -> TestResponse:
        return self.client.post(url, headers=self._headers(key, headers), **kwargs)

    def patch(self, url: str, *, key: str | bool | None = True, headers: dict[str, str] | None = None,
              **kwargs: Any) -> TestResponse:
        return self.client.patch(url, headers=self._headers(key, headers), **kwargs)

    def put(self, url: str, *, key: str | bool | None = True, headers: dict[str, str] | None = None,
            **kwargs: Any) -> TestResponse:
        return self.client.put(url, headers=self._headers(key, headers), **kwargs)

    def open(self, url: str, *, method: str, key: str | bool | None = True,
             headers: dict[str, str] | None = None, **kwargs: Any) -> TestResponse:
        return self.client.open(url, method=method, headers=self._headers(key, headers), **kwargs)


@pytest.fixture
def make_app(redis_url: str) -> Iterator[Callable[..., Flask]]:
    """Factory of apps on this test's Redis (fast polling); every app is closed at teardown."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        # Generous Redis timeouts: on a loaded CI machine a 50 ms read timeout turns into a (legitimate) 503,
        # which would make functional tests flaky; the resilience tests set short timeouts themselves.
        config = {"REDIS_URL": redis_url, "TAILOR_API_KEYS": API_KEYS, "TAILOR_PUBLIC_READ": "false",
                  "TAILOR_MODEL_POLL_S": "0.05", "TAILOR_REDIS_TIMEOUT_MS": "2000",
                  "TAILOR_REDIS_WRITE_TIMEOUT_MS": "5000", **overrides}
        app = create_app(config)
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["tailor"].close()


@pytest.fixture
def app(make_app: Callable[..., Flask], retail: TrainedModel) -> Flask:
    return make_app()


@pytest.fixture
def api(app: Flask) -> ApiClient:
    return ApiClient(app)


def item_ids(response: TestResponse) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["item_id"] for item in response.get_json()["items"]]


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the JSON error envelope with ``status`` (and ``code``); returns the error body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def event(event_id: str, customer_id: str, type_: str = "purchase", item_id: str | None = None,
          timestamp: str = "2011-12-10T10:00:00Z", **extra: Any) -> dict[str, Any]:
    out = {"event_id": event_id, "customer_id": customer_id, "type": type_, "timestamp": timestamp, **extra}
    if item_id is not None:
        out["item_id"] = item_id
    return out


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Poll ``condition`` until true; return the seconds it took (raises AssertionError on timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


class Hammer:
    """Threads sending requests in a loop until stopped; collects every status and body (in order of
    completion) and, in ``started``, the monotonic time each of those requests was sent."""

    def __init__(self, send: Callable[[], tuple[int, Any]], threads: int = 4) -> None:
        self.send = send
        self.results: list[tuple[int, Any]] = []
        self.started: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                result = self.send()
            except BaseException as exc:  # recorded and reported by the test
                with self._lock:
                    self.errors.append(exc)
                continue
            with self._lock:
                self.results.append(result)
                self.started.append(started)

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def snapshot(self) -> list[tuple[int, Any]]:
        with self._lock:
            return list(self.results)

    def sent_after(self, moment: float) -> list[tuple[int, Any]]:
        """Results of the requests sent after ``moment`` (time.monotonic())."""
        with self._lock:
            return [r for r, t in zip(self.results, self.started, strict=True) if t > moment]


@contextmanager
def served_api(redis_url: str, model_path: Path, log_path: Path, *, workers: int = 2,
               **settings: str) -> Iterator[str]:
    """`tailor serve` (real gunicorn) on a free port over the private Redis, emptied and given the model;
    yields the base URL once /readyz answers, stops the server (SIGTERM) afterwards."""
    import os
    import subprocess
    import sys

    import requests

    from service.app.runner import stop_server
    from service.infrastructure.embedded_redis import free_port

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    publish_model(client, model_path)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_API_KEYS": API_KEYS, "PYTHONPATH": str(ROOT), **settings}
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                    "--workers", str(workers)], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(ready, timeout=60, interval=0.2)
            yield base
        finally:
            stop_server(process)
