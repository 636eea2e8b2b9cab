"""A worker reads its customers ahead of their requests (``service.usecases.read_ahead``): both caches filled
within their sizes, answers still those of full scoring, a customer whose data changes during the read not
kept, a new version read again, and under real gunicorn a customer's first request served from the cache."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from prometheus_client import REGISTRY

from redis_state import keys
from scoring.artifact import customers_latest_first
from service.app.factory import Tailor
from service.infrastructure import repository
from tests.service_helpers import KEYS, ApiClient, Models, TrainedModel, event, served_api, wait_for
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


def tracking_app(make_app: Callable[..., Flask], **settings: str) -> tuple[Flask, Tailor]:
    """An app whose customer cache already tracks invalidations (nothing is kept before)."""
    app = make_app(**settings)
    tailor: Tailor = app.extensions["tailor"]
    tailor.repository.customers.start()
    wait_for(lambda: tailor.repository.customers.ready, timeout=5)
    return app, tailor


def test_read_ahead_fills_both_caches_and_answers_stay_those_of_full_scoring(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel) -> None:
    publish_model(redis_client, retail_hybrid.path)
    app, tailor = tracking_app(make_app)
    customers = retail_hybrid.artifact.customer_ids.tolist()
    assert tailor.read_ahead.run(tailor.engine.serving()) == len(customers)
    assert len(tailor.repository.customers) == len(customers) == len(tailor.engine.customer_rows)
    assert tailor.read_ahead.last["rows"] == len(customers)

    ahead = ApiClient(app)
    plain = ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0", TAILOR_CUSTOMER_CACHE_SIZE="0"))
    popular = retail_hybrid.popular_items()[:8]
    misses = tailor.repository.customers.misses
    for customer in customers:
        own = sorted(retail_hybrid.customer_items(customer))[:3]
        page = {"items": [*own, *popular, "not-in-the-catalogue"]}
        url = f"/v1/customers/{customer}/rank"
        assert ahead.post(url, json=page).get_json() == plain.post(url, json=page).get_json(), customer
        url = f"/v1/customers/{customer}/recommendations?n=5"
        assert ahead.get(url).get_json() == plain.get(url).get_json(), customer
    assert tailor.repository.customers.misses == misses  # every customer came from the cache

    customer = retail_hybrid.busiest_customer()
    url, page = f"/v1/customers/{customer}/rank", {"items": popular}
    before = ahead.post(url, json=page).get_json()
    assert ahead.post("/v1/events", json=[event("ahead-1", customer, item_id=popular[-1])]).status_code == 200
    after = ahead.post(url, json=page).get_json()
    assert after == plain.post(url, json=page).get_json() != before


def test_read_ahead_stays_within_the_caches_and_pushes_out_nothing_requested(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel) -> None:
    publish_model(redis_client, retail_hybrid.path)
    app, tailor = tracking_app(make_app, TAILOR_CUSTOMER_CACHE_SIZE="5", TAILOR_ANSWER_CACHE_SIZE="3")
    first = retail_hybrid.busiest_customer()
    popular = retail_hybrid.popular_items()[:4]
    assert ApiClient(app).post(f"/v1/customers/{first}/rank", json={"items": popular}).status_code == 200
    state = tailor.engine.serving()
    assert tailor.read_ahead.run(state) == 5  # the larger of the two caches
    cache, rows = tailor.repository.customers, tailor.engine.customer_rows
    assert len(cache) == 5 and cache.get(first, state.model.version) is not None
    assert len(rows) == 3 and tailor.engine.customer_rows.get(state, first, cache.get(first, state.model.version)[1])

    latest = customers_latest_first(retail_hybrid.path)  # the most recent buyers are read first
    cached = {c for c in latest if cache.get(c, state.model.version) is not None}
    assert cached == {first, *[c for c in latest[:5] if c != first][:4]}

    redis_client.delete(keys.model_blob(state.model.version, keys.CUSTOMERS_LATEST_FIRST))  # an older publish
    scanned = tracking_app(make_app)[1]
    assert scanned.read_ahead.run(scanned.engine.serving()) == len(latest)

    off = tracking_app(make_app, TAILOR_READ_AHEAD="false")[1]
    off.read_ahead.start()
    assert off.read_ahead.last == {} and off.engine.serving().model.version == state.model.version


def test_a_customer_whose_data_changes_while_read_is_not_kept(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the first batch's read and its storing an event changes every customer: the rest of that batch
    is refused, later batches are read afresh, and whatever the cache holds equals a fresh read."""
    monkeypatch.setattr(repository, "READ_AHEAD_BATCH", 100)  # 300 customers: three batches
    publish_model(redis_client, retail_hybrid.path)
    _, tailor = tracking_app(make_app)
    cache, version = tailor.repository.customers, retail_hybrid.version
    customers = retail_hybrid.artifact.customer_ids.tolist()
    reading = tailor.repository.read_ahead(version, len(customers))
    first = next(reading)[0]
    seen = cache.invalidations
    for customer in customers:
        redis_client.hset(keys.customer_live(customer), "late-event", "x")
    wait_for(lambda: cache.invalidations >= seen + 100, timeout=10)  # the batch read: the others cost nothing
    rest = [customer for customer, _, _ in reading]
    assert len(rest) == len(customers) - 1
    assert cache.get(first, version) is None  # stored before the event, then invalidated
    kept = [customer for customer in rest if cache.get(customer, version) is not None]
    assert len(kept) == len(customers) - 100  # the first batch's were refused, the two others kept
    fresh = make_app(TAILOR_CUSTOMER_CACHE_SIZE="0").extensions["tailor"].repository
    for customer in kept:
        assert cache.get(customer, version)[1] == fresh.customer_read(customer, version)[1]


def test_a_newly_activated_version_is_read_ahead_again(
        make_app: Callable[..., Flask], redis_client: redis.Redis, models: Models) -> None:
    publish_model(redis_client, models.retail.path)
    _, tailor = tracking_app(make_app)
    tailor.read_ahead.start()
    wait_for(lambda: tailor.read_ahead.last.get("version") == models.retail.version, timeout=10)
    publish_model(redis_client, models.retail_popular.path)  # activates it
    wait_for(lambda: tailor.read_ahead.last.get("version") == models.retail_popular.version, timeout=10)
    assert tailor.read_ahead.last["customers"] == len(models.retail_popular.artifact.customer_ids)


def test_under_gunicorn_a_customers_first_request_comes_from_the_cache(
        redis_url: str, retail_hybrid: TrainedModel, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with served_api(redis_url, retail_hybrid.path, log, workers=1) as base:
        wait_for(lambda: "ahead of their requests" in log.read_text(), timeout=30)
        headers = {"X-API-Key": KEYS["read"]}
        for customer in retail_hybrid.artifact.customer_ids.tolist()[:20]:
            response = requests.get(f"{base}/v1/customers/{customer}/recommendations", headers=headers, timeout=10)
            assert response.status_code == 200 and response.json()["source"] == "personalized"
        metrics = requests.get(f"{base}/metrics", timeout=10).text
    reads = dict(re.findall(r'tailor_customer_reads_total\{source="(\w+)"\} (\S+)', metrics))
    assert float(reads["cache"]) == 20 and float(reads.get("redis", 0)) == 0, reads


def test_a_customer_from_the_cache_still_gets_the_answer_another_worker_computed(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel) -> None:
    """Read ahead, a customer needs no Redis read; their answer, computed and shared by another worker, is
    then fetched (one HGET) rather than computed again."""
    publish_model(redis_client, retail_hybrid.path)
    customer = retail_hybrid.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations"
    computed = ApiClient(make_app()).get(url).get_json()
    app, tailor = tracking_app(make_app)
    tailor.read_ahead.run(tailor.engine.serving())
    shared = REGISTRY.get_sample_value("tailor_answers_total", {"outcome": "shared"}) or 0.0
    misses = tailor.repository.customers.misses
    assert ApiClient(app).get(url).get_json() == computed
    assert REGISTRY.get_sample_value("tailor_answers_total", {"outcome": "shared"}) == shared + 1
    assert tailor.repository.customers.misses == misses and computed["customer_id"] == customer


def test_a_corrupt_customer_list_falls_back_to_scanning_the_records(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel) -> None:
    publish_model(redis_client, retail_hybrid.path)
    redis_client.set(keys.model_blob(retail_hybrid.version, keys.CUSTOMERS_LATEST_FIRST), b"not an array")
    _, tailor = tracking_app(make_app)
    assert tailor.read_ahead.run(tailor.engine.serving()) == len(retail_hybrid.artifact.customer_ids)


def test_a_failed_read_ahead_does_not_stop_the_next_one(
        make_app: Callable[..., Flask], redis_client: redis.Redis, retail_hybrid: TrainedModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    publish_model(redis_client, retail_hybrid.path)
    _, tailor = tracking_app(make_app)
    runs: list[str] = []

    def run(state: object) -> int:
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("a bug in one run")
        return 0

    monkeypatch.setattr(tailor.read_ahead, "run", run)
    state = tailor.engine.serving()
    tailor.read_ahead.schedule(state)
    wait_for(lambda: not tailor.read_ahead.busy, timeout=5)
    tailor.read_ahead.schedule(state)
    wait_for(lambda: len(runs) == 2, timeout=5)


def test_every_run_ends_with_its_hooks_which_a_worker_uses_to_freeze_what_was_read(
        make_app: Callable[..., Flask], redis_client: redis.Redis, models: Models) -> None:
    """``gunicorn_conf.post_worker_init`` registers ``gc.freeze``: the customers read stay out of every later
    full collection."""
    import gc

    publish_model(redis_client, models.retail.path)
    _, tailor = tracking_app(make_app)
    calls: list[str] = []
    tailor.read_ahead.on_done += [lambda: calls.append(str(tailor.read_ahead.last["version"])), gc.freeze]
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        assert tailor.read_ahead.run(tailor.store.current()) == len(models.retail.artifact.customer_ids)
        assert calls == [models.retail.version]
        assert gc.get_freeze_count() > frozen + len(models.retail.artifact.customer_ids), "the customers read"
        assert len(gc.get_objects(generation=2)) < len(models.retail.artifact.customer_ids)
    finally:
        gc.unfreeze()


def test_a_gunicorn_worker_freezes_what_each_read_ahead_read(
        make_app: Callable[..., Flask], redis_client: redis.Redis, models: Models) -> None:
    import gc
    from types import SimpleNamespace

    from service import gunicorn_conf

    publish_model(redis_client, models.retail.path)
    app = make_app()
    tailor: Tailor = app.extensions["tailor"]
    try:
        gunicorn_conf.post_worker_init(SimpleNamespace(wsgi=app))
        assert gc.freeze in tailor.read_ahead.on_done
        wait_for(lambda: tailor.read_ahead.last.get("version") == models.retail.version, timeout=10)
    finally:
        gc.unfreeze()
