"""/metrics, request ids and JSON logs: counted per endpoint (never per raw path), no secret in any log line."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from service.app import logs
from service.app.runner import stop_server
from service.infrastructure.embedded_redis import EmbeddedRedis
from tests.service_helpers import KEYS, ApiClient, TrainedModel, event

pytest_plugins = ["tests.service_helpers", "tests.marketing_support"]


def scrape(client: Any, **kwargs: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of GET /metrics."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every line the ``tailor`` loggers write, formatted exactly as in production (JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tailor")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_requests_counted_per_endpoint_and_status(app: Flask, api: ApiClient, retail: TrainedModel):
    customer = retail.busiest_customer()
    before = scrape(api.client)
    for _ in range(3):
        assert api.get(f"/v1/customers/{customer}/recommendations").status_code == 200
    assert api.get("/v1/customers/x/recommendations", key=None).status_code == 401
    assert api.get(f"/no/such/{uuid.uuid4().hex}").status_code == 404
    after = scrape(api.client)
    endpoint = "recommendations.customer_recommendations"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tailor_http_requests_total", endpoint=endpoint, method="GET", status="200") == 3
    assert delta("tailor_http_requests_total", endpoint=endpoint, method="GET", status="401") == 1
    assert delta("tailor_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert delta("tailor_http_request_duration_seconds_count", endpoint=endpoint, method="GET", status="200") == 3
    assert delta("tailor_http_request_duration_seconds_bucket", endpoint=endpoint, method="GET", status="200",
                 le="+Inf") == 3
    label_values = {v for _, labels in after for _, v in labels}
    assert customer not in label_values and not any("/" in v for v in label_values), "raw paths are labels"
    assert value(after, "tailor_model_active", version=retail.version) == 1


def test_fallbacks_and_events_counted(make_app: Callable[..., Flask], retail: TrainedModel,
                                      redis_server: EmbeddedRedis):
    api = ApiClient(make_app())
    customer = retail.busiest_customer()
    assert api.get(f"/v1/customers/{customer}/recommendations").get_json()["source"] == "personalized"
    before = scrape(api.client)
    batch = [event("o-1", customer, "view", retail.popular_items()[0]),
             event("o-2", customer, "view", retail.popular_items()[1]),
             event("o-3", customer, "purchase", retail.popular_items()[2])]
    assert api.post("/v1/events", json={"events": batch}).get_json()["accepted"] == 3
    assert api.post("/v1/events", json={"events": batch[:1]}).get_json()["duplicates"] == 1
    redis_server.stop()
    fallbacks = 0
    try:
        for _ in range(20):
            body = api.get(f"/v1/customers/{customer}/recommendations").get_json()
            fallbacks += body.get("source") == "popular-fallback"
    finally:
        redis_server.start()
    assert fallbacks >= 10
    after = scrape(api.client)
    assert value(after, "tailor_events_received_total", type="view") - value(
        before, "tailor_events_received_total", type="view") == 3
    assert value(after, "tailor_events_ingested_total", outcome="accepted") - value(
        before, "tailor_events_ingested_total", outcome="accepted") == 3
    assert value(after, "tailor_events_ingested_total", outcome="duplicate") - value(
        before, "tailor_events_ingested_total", outcome="duplicate") == 1
    assert value(after, "tailor_fallback_answers_total") - value(before, "tailor_fallback_answers_total") == fallbacks


def test_bandit_and_promotion_counters(service: Any) -> None:
    slot_name, promo = f"s{uuid.uuid4().hex[:8]}", f"p{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    assert service.put(f"/v1/messages/{slot_name}", {"variants": [{"id": "a", "content": "A"},
                                                                   {"id": "b", "content": "B"}],
                                                     "sticky_days": 0}).status_code in (200, 201)
    assert service.put(f"/v1/promotions/{promo}", {
        "name": "Sale", "items": service.items[:3], "offer": {"text": "15% off", "percent_off": 15},
        "starts_at": (now - timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=30)).isoformat(),
        "status": "active"}).status_code in (200, 201)
    customer = service.customers[0]
    time.sleep(0.6)  # definitions are cached per process for up to 0.5 s
    answer = service.get(f"/v1/customers/{customer}/messages/{slot_name}").get_json()
    promos = service.get(f"/v1/customers/{customer}/promotions").get_json()["promotions"]
    assert [p["promotion_id"] for p in promos] == [promo]
    click = {"event_id": str(uuid.uuid4()), "customer_id": customer, "type": "click",
             "timestamp": now.isoformat(), "decision_id": answer["decision_id"]}
    promo_click = {**click, "event_id": str(uuid.uuid4()), "decision_id": promos[0]["decision_id"]}
    assert service.events([click, promo_click]).get_json()["accepted"] == 2
    samples = scrape(service.client)
    decisions = sum(v for (name, labels), v in samples.items()
                    if name == "tailor_bandit_decisions_total" and ("slot", slot_name) in labels)
    assert decisions == 1
    assert value(samples, "tailor_bandit_decisions_total", slot=slot_name, variant=answer["variant"]["id"],
                 policy=answer["policy"]) == 1
    assert value(samples, "tailor_bandit_rewards_total", slot=slot_name) == 1
    assert value(samples, "tailor_promotion_impressions_total", promotion=promo) == 1
    assert value(samples, "tailor_promotion_feedback_total", promotion=promo, type="click") == 1


def test_metrics_scope(make_app: Callable[..., Flask], retail: TrainedModel):
    public = ApiClient(make_app(), key=None)
    assert public.get("/metrics").status_code == 200
    guarded = ApiClient(make_app(TAILOR_METRICS_SCOPE="admin"), key=None)
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", key=KEYS["read"]).status_code == 403
    assert guarded.get("/metrics", key=KEYS["admin"]).status_code == 200


def test_request_id_taken_validated_or_generated(api: ApiClient, retail: TrainedModel):
    given = api.get("/healthz", headers={"X-Request-ID": "abc-123.DEF:4_5"})
    assert given.headers["X-Request-ID"] == "abc-123.DEF:4_5"
    for bad in ("x" * 129, "has space", "semi;colon", "quote\"", "<script>", ""):
        generated = api.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert generated != bad and len(generated) == 32 and int(generated, 16) >= 0
    first = api.get("/healthz").headers["X-Request-ID"]
    assert first != api.get("/healthz").headers["X-Request-ID"]
    assert api.get("/v1/customers/x/recommendations", key=None, headers={"X-Request-ID": "err-1"}).headers[
        "X-Request-ID"] == "err-1", "error answers carry the id too"


def test_access_log_is_json_with_request_id_and_no_secret(make_app: Callable[..., Flask], retail: TrainedModel,
                                                          captured_logs: io.StringIO):
    password = "redis-pass-" + uuid.uuid4().hex
    api = ApiClient(make_app())
    customer = retail.busiest_customer()
    key = KEYS["read"]
    api.get(f"/v1/customers/{customer}/recommendations?n=3", headers={"X-Request-ID": "trace-42"})
    api.get("/v1/popular", key=f"wrong-{key}")
    api.get("/v1/popular", key=None, headers={"X-API-Key": key})
    logging.getLogger("tailor.test").error("connecting to redis://user:%s@db:6379/0 with Bearer %s", password, key)
    lines = [line for line in captured_logs.getvalue().splitlines() if line]
    docs = [json.loads(line) for line in lines]
    access = [d for d in docs if d["logger"] == "tailor.access"]
    assert len(access) == 3
    first = access[0]
    assert {"time", "level", "logger", "message", "request_id", "method", "path", "status",
            "duration_ms"} <= set(first)
    assert first["request_id"] == "trace-42" and first["method"] == "GET" and first["status"] == 200
    assert first["path"] == f"/v1/customers/{customer}/recommendations" and first["duration_ms"] > 0
    assert [d["status"] for d in access[1:]] == [401, 200]
    text = captured_logs.getvalue()
    for secret in (key, password, *KEYS.values()):
        assert secret not in text
    assert "redis://user:***@db:6379/0" in text


def test_text_format_is_redacted_too(make_app: Callable[..., Flask], retail: TrainedModel):
    make_app(TAILOR_LOG_FORMAT="text")
    record = logging.LogRecord("tailor.x", logging.INFO, __file__, 1, "key %s", (KEYS["admin"],), None)
    line = logs.TextFormatter().format(record)
    assert KEYS["admin"] not in line and "key ***" in line


def test_middleware_reuses_its_label_children(app: Flask, retail: TrainedModel):
    """The observer's per-request work is a cached lookup: one pair of label children per (endpoint, method,
    status), however many requests; each request counted once. (Its cost in µs is measured by
    bench/hot_path.py, not asserted here: unit tests carry no timing assertions.)"""
    from service.app.observability import RequestObserver
    from service.infrastructure.metrics import REQUESTS

    observer = RequestObserver(app.extensions["tailor"], access_log=False)
    response = app.response_class(b"{}")
    with app.test_request_context("/healthz"):
        observer.before()
        observer.after(response)
        (key, children), = observer._children.items()
        before = children[0]._value.get()
        for _ in range(1_000):
            observer.before()
            observer.after(response)
        assert list(observer._children) == [key] and observer._children[key] is children
        assert children[0]._value.get() - before == 1_000
        assert children[0] is REQUESTS.labels(*[str(part) for part in key])


@pytest.mark.slow
def test_gunicorn_workers_share_metrics_and_log_json(models: Any, redis_url: str, redis_client: Any, tmp_path):
    """`tailor serve` with 3 workers: every scrape (whichever worker answers) counts all workers' requests;
    stderr is JSON lines only, with request ids and without the API key."""
    import os
    import subprocess
    import sys

    import requests

    from service.infrastructure.embedded_redis import free_port
    from tests.service_helpers import API_KEYS, ROOT, wait_for
    from training.publish import publish_model

    publish_model(redis_client, models.retail.path)
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file of a previous run")
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_API_KEYS": API_KEYS,
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "TAILOR_LOG_FORMAT": "json"}
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                   "--workers", "3"], cwd=ROOT, env=env, stdout=stderr, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    key = KEYS["read"]
    customer = models.retail.busiest_customer()
    try:
        def ready() -> bool:
            try:
                return requests.get(f"{base}/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout=60, interval=0.2)
        session = requests.Session()
        n = 60
        for i in range(n):
            response = session.get(f"{base}/v1/customers/{customer}/recommendations?n=3",
                                   headers={"Authorization": f"Bearer {key}", "X-Request-ID": f"gw-{i}",
                                            "Connection": "close"}, timeout=10)
            assert response.status_code == 200 and response.headers["X-Request-ID"] == f"gw-{i}"
        pids = {path.name for path in metrics_dir.glob("counter_*.db")}
        assert "counter_999999.db" not in pids, "files of a previous run are removed at start"
        assert len(pids) >= 2, f"requests were spread over several workers: {pids}"
        for _ in range(6):
            samples = _scrape_url(f"{base}/metrics")
            assert value(samples, "tailor_http_requests_total", endpoint="recommendations.customer_recommendations",
                         method="GET", status="200") == n
            assert value(samples, "tailor_model_active", version=models.retail.version) == 1
    finally:
        stop_server(server)
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    assert any(d["logger"].startswith("gunicorn") for d in docs)
    access = [d for d in docs if d["logger"] == "tailor.access" and d.get("endpoint", "").startswith("recomm")]
    assert sorted(d["request_id"] for d in access) == sorted(f"gw-{i}" for i in range(n))
    assert key not in stderr_path.read_text()


def _scrape_url(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    import requests

    response = requests.get(url, headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples
