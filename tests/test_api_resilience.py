"""Redis outages and slowness, and model hot swaps while requests are running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask

from redis_state import keys
from service.app.runner import stop_server
from service.infrastructure import model_store
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port
from service.infrastructure.model_store import ModelStore
from tests.service_helpers import (
    API_KEYS,
    KEYS,
    ROOT,
    ApiClient,
    Hammer,
    Models,
    TrainedModel,
    assert_error,
    event,
    wait_for,
)
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


def customer_recs(api: ApiClient, customer: str) -> Callable[[], tuple[int, dict]]:
    def send() -> tuple[int, dict]:
        response = api.get(f"/v1/customers/{customer}/recommendations?n=5")
        return response.status_code, response.get_json()
    return send


def test_redis_down_then_back(make_app: Callable[..., Flask], retail: TrainedModel, redis_server: EmbeddedRedis):
    app = make_app()
    api = ApiClient(app)
    customer = retail.busiest_customer()
    assert api.get(f"/v1/customers/{customer}/recommendations").get_json()["source"] == "personalized"

    with Hammer(customer_recs(ApiClient(app), customer)) as hammer:
        time.sleep(0.1)
        redis_server.stop()
        wait_for(lambda: hammer.snapshot()[-1][1]["source"] == "popular-fallback", timeout=5)

        down = api.get(f"/v1/customers/{customer}/recommendations?n=4&exclude={retail.popular_items()[0]}")
        body = down.get_json()
        assert down.status_code == 200 and body["source"] == "popular-fallback"
        assert body["model_version"] == retail.version
        assert [i["item_id"] for i in body["items"]] == retail.popular_items()[1:5]
        assert api.get("/v1/popular").status_code == 200
        assert api.get(f"/v1/items/{retail.popular_items()[0]}/similar").status_code == 200
        assert api.post("/v1/recommendations", json={"items": retail.popular_items()[:1]}).status_code == 200
        assert_error(api.get("/readyz", key=None), 503, "not_ready")
        assert_error(api.post("/v1/events", json=[event("down-1", "c", "click")]), 503, "redis_unavailable")
        assert_error(api.get(f"/v1/customers/{customer}/profile"), 503, "redis_unavailable")
        assert app.extensions["tailor"].gateway.breaker.is_open

        redis_server.start()
        publish_model(redis.Redis.from_url(redis_server.url), retail.path)  # the restarted Redis is empty
        wait_for(lambda: hammer.snapshot()[-1][1]["source"] == "personalized", timeout=5)

    statuses = {status for status, _ in hammer.snapshot()}
    assert statuses == {200}, "no request failed while Redis was down"
    sources = {body["source"] for _, body in hammer.snapshot()}
    assert {"personalized", "popular-fallback"} <= sources
    assert api.get("/readyz", key=None).status_code == 200
    assert api.post("/v1/events", json=[event("up-1", "c", "click")]).status_code == 200


def test_slow_redis_falls_back_instead_of_waiting(make_app: Callable[..., Flask], retail: TrainedModel,
                                                 redis_client: redis.Redis):
    api = ApiClient(make_app(TAILOR_REDIS_TIMEOUT_MS="30"))
    customer = retail.busiest_customer()
    assert api.get(f"/v1/customers/{customer}/recommendations").get_json()["source"] == "personalized"
    redis_client.execute_command("CLIENT", "PAUSE", "600", "ALL")
    body = api.get(f"/v1/customers/{customer}/recommendations").get_json()
    assert body["source"] == "popular-fallback"
    wait_for(lambda: api.get(f"/v1/customers/{customer}/recommendations").get_json()["source"] == "personalized",
             timeout=5)


def test_redis_down_before_any_model_was_loaded(make_app: Callable[..., Flask]):
    api = ApiClient(make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert_error(api.get("/v1/customers/1/recommendations"), 503, "no_active_model")
    assert_error(api.get("/readyz", key=None), 503, "not_ready")
    assert api.get("/healthz", key=None).get_json() == {"status": "ok"}


def test_a_worker_starts_serving_only_once_its_model_is_loaded(make_app: Callable[..., Flask],
                                                              retail: TrainedModel, redis_client: redis.Redis):
    """A load that fails while a worker starts (a blob missing for a moment here; in CI, a load timing out while
    every worker loads at once) is retried at once, not after the poller's back-off: otherwise the worker takes
    requests it can only answer with 503 ``no_active_model``."""
    gateway = make_app().extensions["tailor"].gateway
    blob = keys.model_blob(retail.version, "item_ids")
    redis_client.rename(blob, f"{blob}:aside")
    restore = threading.Timer(0.5, lambda: redis_client.rename(f"{blob}:aside", blob))
    restore.start()
    store = ModelStore(gateway, poll_s=3600)
    try:
        store.start(wait_s=30)
        state = store.current()
        assert state is not None and state.model.version == retail.version
    finally:
        restore.join()
        store.close()


def test_requests_arriving_during_the_first_load_wait_for_it(make_app: Callable[..., Flask], retail: TrainedModel,
                                                            monkeypatch: pytest.MonkeyPatch):
    """Without gunicorn's start hook (``flask run``, tests) the first request loads the model; one arriving
    meanwhile waits for that load instead of answering 503 ``no_active_model``."""
    gateway = make_app().extensions["tailor"].gateway
    real_load = model_store.load_version

    def slow_load(*args, **kwargs):
        time.sleep(0.5)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model_store, "load_version", slow_load)
    store = ModelStore(gateway, poll_s=3600)
    first = threading.Thread(target=store.current)
    try:
        first.start()
        time.sleep(0.1)  # the first caller is loading
        state = store.current()
        assert state is not None and state.model.version == retail.version
    finally:
        first.join()
        store.close()


def test_a_worker_does_not_wait_when_nothing_is_active(make_app: Callable[..., Flask], redis_client: redis.Redis):
    gateway = make_app().extensions["tailor"].gateway
    assert redis_client.get(keys.ACTIVE_MODEL) is None
    store = ModelStore(gateway, poll_s=3600)
    started = time.monotonic()
    try:
        store.start(wait_s=60)
        assert store.current() is None and store.last_poll_ok
        assert time.monotonic() - started < 30, "start() waited although no version is active"
    finally:
        store.close()


def test_hot_swap_while_requests_run(make_app: Callable[..., Flask], models: Models, redis_client: redis.Redis):
    publish_model(redis_client, models.retail.path)
    app = make_app(TAILOR_MODEL_POLL_S="0.25")
    customer = models.retail.busiest_customer()
    assert ApiClient(app).get("/v1/popular").get_json()["model_version"] == models.retail.version

    with Hammer(customer_recs(ApiClient(app), customer), threads=4) as hammer:
        time.sleep(0.3)
        publish_model(redis_client, models.retail_popular.path)
        took = wait_for(lambda: hammer.snapshot()[-1][1]["model_version"] == models.retail_popular.version,
                        timeout=5)
        swapped = time.monotonic()
        time.sleep(0.3)

    results = hammer.snapshot()
    assert not hammer.errors
    assert {status for status, _ in results} == {200}, "no request failed during the swap"
    versions = {body["model_version"] for _, body in results}
    assert versions == {models.retail.version, models.retail_popular.version}
    later = {body["model_version"] for _, body in hammer.sent_after(swapped)}
    assert later == {models.retail_popular.version}, "once swapped, the old version is gone"
    assert took < 1.5, f"new version visible after {took:.2f}s"


@pytest.mark.slow
def test_gunicorn_swap_and_outage(models: Models, redis_url: str, redis_client: redis.Redis,
                                  redis_server: EmbeddedRedis, tmp_path):
    """`tailor serve` with several workers: every worker swaps within a second, rides out a Redis restart,
    and no request fails."""
    publish_model(redis_client, models.retail.path)
    port = free_port()
    # info: the workers' boots, exits and model loads are in the log shown when a request fails
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_API_KEYS": API_KEYS, "TAILOR_LOG_LEVEL": "info"}
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "3"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEYS['read']}"}
    customer = models.retail.busiest_customer()
    try:
        wait_for(lambda: _ready(base), timeout=60, interval=0.2)
        # Every worker is up with the model (a cold start takes seconds per worker): one that only boots
        # during the outage below finds Redis empty after the restart and rightly has no model to serve.
        wait_for(lambda: len(_workers_with_a_model(tmp_path / "gunicorn.log")) >= 3, timeout=60, interval=0.2)

        def send() -> tuple[int, dict]:
            response = requests.get(f"{base}/v1/customers/{customer}/recommendations?n=5", headers=headers,
                                    timeout=10)
            return response.status_code, response.json()

        def settle(field: str, value: str) -> None:
            """Wait until the last 12 answers all have ``field`` == ``value``; say what they were if not."""
            try:
                wait_for(lambda: all(body.get(field) == value for _, body in hammer.snapshot()[-12:]), timeout=10)
            except AssertionError:
                raise AssertionError(f"{field} never {value!r}; last answers: {hammer.snapshot()[-3:]}") from None

        phases: list[tuple[int, str]] = []  # (answers so far, what the test did next)

        def phase(name: str) -> None:
            phases.append((len(hammer.snapshot()), f"{name} at {time.strftime('%H:%M:%S')}"))

        with Hammer(send, threads=6) as hammer:
            time.sleep(0.5)
            phase("publish the second version")
            publish_model(redis_client, models.retail_popular.path)
            start = time.monotonic()
            settle("model_version", models.retail_popular.version)
            took = time.monotonic() - start
            phase("stop Redis")
            redis_server.stop()
            settle("source", "popular-fallback")
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
            phase("start Redis")
            redis_server.start()
            phase("publish again")
            publish_model(redis.Redis.from_url(redis_url), models.retail_popular.path)
            settle("source", "personalized")
        results = hammer.snapshot()
        assert not hammer.errors, hammer.errors[:3]
        failed = [(index, status, body) for index, (status, body) in enumerate(results) if status != 200]
        log.flush()
        assert not failed, (f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:3]} (answer numbers; "
                            f"the test's steps: {phases}); server log without access lines:\n"
                            + _lifecycle(tmp_path / "gunicorn.log"))
        assert took < 1.5, f"all workers serve the new version after {took:.2f}s"
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        stop_server(server)
        log.close()


def _workers_with_a_model(log: Path) -> set[int]:
    """The pids of the workers that have logged loading a model version."""
    lines = log.read_text().splitlines()  # the last one may be half written: only whole records count
    records = (json.loads(line) for line in lines if '"tailor.store"' in line and line.endswith("}"))
    return {record["pid"] for record in records if " loaded in " in record["message"]}


def _lifecycle(log: Path, last: int = 60) -> str:
    """The server log's last lines that are not access lines: worker boots and exits, loads, outages."""
    lines = [line for line in log.read_text().splitlines() if '"tailor.access"' not in line]
    return "\n".join(lines[-last:])


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_serves_over_a_unix_socket_url(make_app: Callable[..., Flask], retail: TrainedModel,
                                       redis_server: EmbeddedRedis) -> None:
    """REDIS_URL may name a Unix socket (a Redis on the same host): readiness and scoring work."""
    app = make_app(REDIS_URL=redis_server.unix_url, TAILOR_PUBLIC_READ="true")
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    customer = retail.busiest_customer()
    body = client.get(f"/v1/customers/{customer}/recommendations?n=3").get_json()
    assert body["source"] == "personalized" and len(body["items"]) == 3


def test_embedded_redis_in_a_deep_directory_skips_the_unix_socket(tmp_path) -> None:
    """A socket address is at most 107 bytes: a deep data directory must still give a working (TCP) Redis."""
    server = EmbeddedRedis(tmp_path / ("d" * 120)).start()
    try:
        assert server.socket_path is None
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(RuntimeError, match="too deep"):
            _ = server.unix_url
    finally:
        server.stop()


def test_a_worker_waits_at_start_for_a_redis_that_answers_late(make_app: Callable[..., Flask], retail: TrainedModel,
                                                                tmp_path: Path) -> None:
    """Workers booting while Redis does not answer yet retry the first load instead of serving 503s."""
    server = EmbeddedRedis(tmp_path / "late-redis", persist=True).start()
    publish_model(redis.Redis.from_url(server.url), retail.path)
    server.stop()  # the data stays in its append-only file
    app = make_app(REDIS_URL=server.url)
    timer = threading.Timer(0.5, server.start)
    timer.start()
    try:
        started = time.monotonic()
        app.extensions["tailor"].store.start(wait_s=10.0)
        assert app.extensions["tailor"].store.current() is not None, time.monotonic() - started
        assert time.monotonic() - started >= 0.4
    finally:
        timer.join()
        server.stop()
