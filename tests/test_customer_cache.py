"""The per-worker customer cache against a real Redis: invalidation by other processes' writes, refused
stale fills, FLUSHALL, a Redis restart, and two app instances ("workers") sharing one Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from redis_state import keys
from service.infrastructure.customer_cache import CustomerCache
from service.infrastructure.embedded_redis import EmbeddedRedis
from service.infrastructure.redis_client import make_client
from tests.service_helpers import KEYS, ApiClient, TrainedModel, event, item_ids, wait_for

pytest_plugins = ["tests.service_helpers"]


@pytest.fixture
def cache(redis_url: str) -> Iterator[CustomerCache]:
    client = make_client(redis_url, 2.0, 2.0)
    customers = CustomerCache(client, max_entries=3)
    customers.token()  # starts tracking
    wait_for(lambda: customers.ready, timeout=5)
    yield customers
    customers.close()
    client.close()


def stored(cache: CustomerCache, customer: str, value: str, version: str = "v1") -> None:
    cache.put(customer, version, value, cache.token())
    assert cache.get(customer, version) == value


def test_writes_by_anyone_invalidate_at_once(cache: CustomerCache, redis_client: redis.Redis) -> None:
    stored(cache, "42", "first")
    assert cache.get("42", "another-version") is None  # records belong to one model version
    redis_client.hset(keys.customer_live("42"), "event-1", "x")  # another process's event write
    assert cache.get("42", "v1") is None
    stored(cache, "42", "second")
    redis_client.hset(keys.customer_session("42"), "item", "x")
    assert cache.get("42", "v1") is None
    stored(cache, "7", "other")
    redis_client.set("tailor:unrelated", "1")
    assert cache.get("7", "v1") == "other"


def test_a_fill_read_before_an_invalidation_is_refused(cache: CustomerCache, redis_client: redis.Redis) -> None:
    token = cache.token()  # the request starts reading customer 42 ...
    redis_client.hset(keys.customer_live("42"), "event-1", "x")  # ... an event lands meanwhile ...
    wait_for(lambda: cache.invalidations > token, timeout=5)
    cache.put("42", "v1", "stale", token)  # ... so what it read may be stale: not stored
    assert cache.get("42", "v1") is None
    stored(cache, "42", "fresh")


def test_expiry_flush_and_size_limit(cache: CustomerCache, redis_client: redis.Redis) -> None:
    stored(cache, "1", "a")
    seen = cache.invalidations
    redis_client.hset(keys.customer_session("1"), "item", "x")
    redis_client.pexpire(keys.customer_session("1"), 500)
    wait_for(lambda: cache.get("1", "v1") is None and cache.invalidations >= seen + 2, timeout=5)
    stored(cache, "1", "b")
    wait_for(lambda: cache.get("1", "v1") is None, timeout=5)  # the expiry invalidates too
    for customer in "1234":
        stored(cache, customer, customer)
    assert len(cache) == 3 and cache.get("1", "v1") is None  # least recently used went first
    redis_client.flushall()
    wait_for(lambda: len(cache) == 0, timeout=5)


def test_redis_restart_bypasses_the_cache_until_tracking_is_back(tmp_path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = make_client(server.url, 0.5, 0.5)
    customers = CustomerCache(client, max_entries=10, retry_s=0.05)
    try:
        customers.token()
        wait_for(lambda: customers.ready, timeout=5)
        stored(customers, "42", "before")
        server.stop()
        wait_for(lambda: not customers.ready, timeout=5)
        assert customers.get("42", "v1") is None and len(customers) == 0
        customers.put("42", "v1", "while down", customers.token())
        assert customers.get("42", "v1") is None
        server.start()
        wait_for(lambda: customers.ready, timeout=10)
        assert customers.get("42", "v1") is None  # nothing survives: invalidations may have been missed
        stored(customers, "42", "after")
    finally:
        customers.close()
        client.close()
        server.stop()


def test_an_event_via_one_worker_changes_the_next_answer_of_another(make_app: Callable[..., Flask],
                                                                    retail: TrainedModel) -> None:
    worker_a, worker_b = ApiClient(make_app()), ApiClient(make_app())
    customer = retail.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations?n=5&exclude_purchased=true"
    before = item_ids(worker_a.get(url))
    cache = worker_a.app.extensions["tailor"].repository.customers
    wait_for(lambda: cache.ready, timeout=5)
    assert item_ids(worker_a.get(url)) == before  # read and stored
    assert item_ids(worker_a.get(url)) == before and cache.hits >= 1  # served from the cache
    started = time.monotonic()
    response = worker_b.post("/v1/events", json={"events": [event("buy-x", customer, "purchase", before[0])]},
                             key=KEYS["read"])
    assert response.status_code == 200
    after = item_ids(worker_a.get(url))  # the very next request, no waiting
    assert before[0] not in after and len(after) == 5, time.monotonic() - started


def test_cache_size_zero_reads_redis_every_time(make_app: Callable[..., Flask], retail: TrainedModel) -> None:
    api = ApiClient(make_app(TAILOR_CUSTOMER_CACHE_SIZE="0"))
    customer = retail.busiest_customer()
    for _ in range(3):
        assert len(item_ids(api.get(f"/v1/customers/{customer}/recommendations?n=3"))) == 3
    cache = api.app.extensions["tailor"].repository.customers
    assert not cache.enabled and cache.hits == 0 and cache._thread is None


def test_a_customer_read_before_their_record_exists_is_not_kept(make_app: Callable[..., Flask], retail: TrainedModel,
                                                                  redis_client: redis.Redis) -> None:
    """After a Redis restart the workers serve the version they hold while it is re-published: a customer
    read in between has no record yet, and must not stay "unknown" once it is back (records are untracked)."""
    api = ApiClient(make_app())
    cache = api.app.extensions["tailor"].repository.customers
    customer = retail.busiest_customer()
    url = f"/v1/customers/{customer}/recommendations?n=3"
    assert api.get(url).get_json()["source"] == "personalized"  # starts the cache's tracking
    wait_for(lambda: cache.ready, timeout=5)
    record_key = keys.customer_history(retail.version, customer)
    record = redis_client.get(record_key)
    redis_client.delete(record_key)
    assert api.get(url).get_json()["source"] == "popular"
    assert api.get(url).get_json()["source"] == "popular"
    redis_client.set(record_key, record)  # what re-publishing writes
    assert api.get(url).get_json()["source"] == "personalized"
