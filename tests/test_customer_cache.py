"""The per-worker customer cache against a real Redis: invalidation by other processes' writes of what it
read (and nothing else), refused stale fills, FLUSHALL, lost tracked connections, a replaced subscriber, a
Redis restart, and two app instances ("workers") sharing one Redis."""

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


class ReadingCache(CustomerCache):
    """The cache with the tracked client a repository reads customers through."""

    def __init__(self, client: redis.Redis, max_entries: int, **options: float) -> None:
        super().__init__(client, max_entries, **options)
        self.base = client
        self.reads = self.tracked_client(client)


@pytest.fixture
def cache(redis_url: str) -> Iterator[ReadingCache]:
    client = make_client(redis_url, 2.0, 2.0)
    customers = ReadingCache(client, max_entries=3, heartbeat_s=0.1)
    customers.token()  # starts tracking
    wait_for(lambda: customers.ready, timeout=5)
    yield customers
    customers.close()
    client.close()


def read(cache: ReadingCache, customer: str, through: redis.Redis | None = None) -> None:
    """What a request does before storing a customer: read their keys through a tracked connection."""
    client = through or cache.reads
    client.hgetall(keys.customer_live(customer))
    client.hgetall(keys.customer_session(customer))


def stored(cache: ReadingCache, customer: str, value: str, version: str = "v1",
           through: redis.Redis | None = None) -> None:
    token = cache.token()
    read(cache, customer, through)
    cache.put(customer, version, value, token, cache.reader())
    assert cache.get(customer, version) == value


def invalidated(cache: ReadingCache, redis_client: redis.Redis, customer: str) -> bool:
    """Whether an event for ``customer`` (written by another client) takes them out of the cache."""
    seen = cache.invalidations
    redis_client.hset(keys.customer_live(customer), f"event-{seen}", "x")
    wait_for(lambda: cache.invalidations > seen or cache.get(customer, "v1") is None, timeout=5)
    return cache.get(customer, "v1") is None


def test_writes_by_anyone_invalidate_at_once(cache: ReadingCache, redis_client: redis.Redis) -> None:
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


def test_a_fill_read_before_an_invalidation_is_refused(cache: ReadingCache, redis_client: redis.Redis) -> None:
    token = cache.token()  # the request starts reading customer 42 ...
    read(cache, "42")
    redis_client.hset(keys.customer_live("42"), "event-1", "x")  # ... an event lands meanwhile ...
    wait_for(lambda: cache.invalidations > token, timeout=5)
    cache.put("42", "v1", "stale", token, cache.reader())  # ... so what it read may be stale: not stored
    assert cache.get("42", "v1") is None
    stored(cache, "42", "fresh")


def test_expiry_flush_and_size_limit(cache: ReadingCache, redis_client: redis.Redis) -> None:
    stored(cache, "1", "a")
    redis_client.hset(keys.customer_session("1"), "item", "x")
    wait_for(lambda: cache.get("1", "v1") is None, timeout=5)
    redis_client.pexpire(keys.customer_session("1"), 500)
    stored(cache, "1", "b")  # read again after the write: tracked again
    seen = cache.invalidations
    wait_for(lambda: cache.get("1", "v1") is None and cache.invalidations > seen, timeout=5)  # the expiry too
    for customer in "1234":
        stored(cache, customer, customer)
    assert len(cache) == 3 and cache.get("1", "v1") is None  # least recently used went first
    redis_client.flushall()
    wait_for(lambda: len(cache) == 0, timeout=5)


def test_only_writes_to_what_was_read_are_sent(cache: ReadingCache, redis_client: redis.Redis) -> None:
    """Tracking is per key read, not broadcast: an event for a customer this worker never read (or already
    heard about since reading) costs it no message."""
    stored(cache, "42", "first")
    seen = cache.invalidations
    for customer in ("7", "8", "9"):  # never read here
        redis_client.hset(keys.customer_live(customer), "event-1", "x")
    redis_client.hset(keys.customer_live("42"), "event-1", "x")
    wait_for(lambda: cache.invalidations > seen, timeout=5)
    redis_client.hset(keys.customer_live("42"), "event-2", "x")  # heard about already, not read since
    redis_client.hset(keys.customer_session("7"), "item", "x")
    assert redis_client.ping()
    time.sleep(0.3)
    cache.get("42", "v1")  # drains
    assert cache.invalidations == seen + 1


def test_a_lost_tracked_connection_drops_what_was_read_through_it(cache: ReadingCache,
                                                                  redis_client: redis.Redis) -> None:
    """Redis forgets what a closed connection read: whether the server or this side closes it, nothing read
    through it may stay cached, as its invalidations would never come. What other connections read stays,
    and is still invalidated (a burst of read timeouts must not empty the cache when Redis is slow)."""
    other = cache.tracked_client(cache.base)
    stored(cache, "42", "first")
    killed = cache.reader()
    stored(cache, "7", "other", through=other)
    assert killed is not None and cache.reader() is not None and cache.reader() != killed
    assert redis_client.client_kill_filter(_type="normal", skipme=True, _id=killed[1]) == 1
    wait_for(lambda: cache.get("42", "v1") is None, timeout=5)  # the heartbeat's CLIENT LIST found it gone
    assert cache.get("7", "v1") == "other" and len(cache) == 1
    assert invalidated(cache, redis_client, "7")
    stored(cache, "42", "again")  # the pool reconnects and registers the new connection
    assert invalidated(cache, redis_client, "42")
    stored(cache, "42", "third")
    stored(cache, "7", "kept", through=other)
    cache.reads.connection_pool.disconnect()  # closed on this side (an error, a timeout)
    assert cache.get("42", "v1") is None and cache.get("7", "v1") == "kept"
    assert invalidated(cache, redis_client, "7")
    stored(cache, "42", "fourth")
    redis_client.hset(keys.customer_session("42"), "item", "x")
    wait_for(lambda: cache.get("42", "v1") is None, timeout=5)


def test_a_fill_read_through_a_connection_lost_before_its_put_is_refused(cache: ReadingCache) -> None:
    """Another request's timeout may close the connection a fill was read through before the fill is stored:
    Redis no longer tracks those keys, so the fill is refused."""
    token = cache.token()
    read(cache, "42")
    reader = cache.reader()
    cache.reads.connection_pool.disconnect()
    cache.put("42", "v1", "untracked now", token, reader)
    assert cache.get("42", "v1") is None
    stored(cache, "42", "tracked")  # a new connection, registered


def test_a_replaced_subscriber_re_registers_the_tracked_connections(cache: ReadingCache,
                                                                    redis_client: redis.Redis) -> None:
    """Connections tracked for a subscriber that died redirect to nobody: at their next use they register
    with the new one, before anything read through them is stored."""
    stored(cache, "42", "first")
    subscriber = cache._generation
    assert redis_client.client_kill_filter(_type="pubsub", skipme=True) >= 1
    wait_for(lambda: cache.ready and cache._generation > subscriber, timeout=10)
    assert cache.get("42", "v1") is None
    stored(cache, "42", "second")  # through the same pooled connection, re-registered
    redis_client.hset(keys.customer_live("42"), "event-1", "x")
    assert cache.get("42", "v1") is None


def test_a_refused_registration_reads_on_and_stores_nothing(cache: ReadingCache, redis_client: redis.Redis) -> None:
    """A connection that cannot register (its subscriber vanished before the cache noticed) still reads, but
    nothing read meanwhile is stored: Redis would not report its changes."""
    stored(cache, "42", "first")
    cache.reads.connection_pool.disconnect()
    cache._subscriber_id = 2**40  # no such client: Redis refuses to redirect to it
    token = cache.token()
    read(cache, "7")
    cache.put("7", "v1", "untracked", token, cache.reader())
    assert cache.get("7", "v1") is None and cache.get("42", "v1") is None
    wait_for(lambda: cache.ready, timeout=10)  # a new subscriber, and registrations work again
    stored(cache, "7", "tracked")
    redis_client.hset(keys.customer_live("7"), "event-1", "x")
    assert cache.get("7", "v1") is None


def test_redis_restart_bypasses_the_cache_until_tracking_is_back(tmp_path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = make_client(server.url, 0.5, 0.5)
    customers = ReadingCache(client, max_entries=10, retry_s=0.05)
    try:
        customers.token()
        wait_for(lambda: customers.ready, timeout=5)
        stored(customers, "42", "before")
        server.stop()
        wait_for(lambda: not customers.ready, timeout=5)
        assert customers.get("42", "v1") is None and len(customers) == 0
        customers.put("42", "v1", "while down", customers.token(), customers.reader())
        assert customers.get("42", "v1") is None
        server.start()
        wait_for(lambda: customers.ready, timeout=10)
        assert customers.get("42", "v1") is None  # nothing survives: invalidations may have been missed
        stored(customers, "42", "after")
    finally:
        customers.close()
        client.close()
        server.stop()


def test_a_redis_that_refuses_tracking_is_named_once_and_bypassed(tmp_path, caplog) -> None:
    """A Redis without the commands the cache needs (before 6.2, or with them renamed away) says why once."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.extra_args = ["--rename-command", "CLIENT", ""]
    server.start()
    client = make_client(server.url, 0.5, 0.5)
    customers = ReadingCache(client, max_entries=10, retry_s=0.02)
    try:
        with caplog.at_level("WARNING", logger="tailor.customer_cache"):
            customers.token()
            time.sleep(0.5)  # ~25 attempts
        assert not customers.ready
        told = [r.getMessage() for r in caplog.records if "customer cache off" in r.getMessage()]
        assert len(told) == 1 and "Redis >= 6.2" in told[0] and "every request reads Redis" in told[0], told
        token = customers.token()
        customers.reads.hgetall(keys.customer_live("42"))  # reads still work, untracked
        customers.put("42", "v1", "value", token, customers.reader())
        assert customers.get("42", "v1") is None
    finally:
        customers.close()
        client.close()
        server.stop()


def answer_from_the_cache(api: ApiClient, customer: str) -> tuple[str, list[str], CustomerCache]:
    """(url, items, cache) of the customer's discovery recommendations, once their answer is served from the
    worker's customer cache."""
    url = f"/v1/customers/{customer}/recommendations?n=5&exclude_purchased=true"
    before = item_ids(api.get(url))
    cache = api.app.extensions["tailor"].repository.customers
    wait_for(lambda: cache.ready, timeout=5)
    assert item_ids(api.get(url)) == before  # read and stored
    assert item_ids(api.get(url)) == before and cache.hits >= 1  # served from the cache
    return url, before, cache


def test_an_event_via_one_worker_changes_the_next_answer_of_another(make_app: Callable[..., Flask],
                                                                    retail: TrainedModel) -> None:
    worker_a, worker_b = ApiClient(make_app()), ApiClient(make_app())
    customer = retail.busiest_customer()
    url, before, _ = answer_from_the_cache(worker_a, customer)
    started = time.monotonic()
    response = worker_b.post("/v1/events", json={"events": [event("buy-x", customer, "purchase", before[0])]},
                             key=KEYS["read"])
    assert response.status_code == 200
    after = item_ids(worker_a.get(url))  # the very next request, no waiting
    assert before[0] not in after and len(after) == 5, time.monotonic() - started


def test_an_event_changes_the_next_answer_of_its_own_worker_before_the_invalidation_arrives(
        make_app: Callable[..., Flask], retail: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis may flush the writer's reply before the invalidation it sends the subscriber: the worker that
    wrote the events must not wait for it (the invalidation is held back here, as under load)."""
    api = ApiClient(make_app())
    customer = retail.busiest_customer()
    url, before, cache = answer_from_the_cache(api, customer)
    monkeypatch.setattr(cache, "_drain", lambda: None)  # the subscriber has not received it yet
    response = api.post("/v1/events", json={"events": [event("buy-own", customer, "purchase", before[0])]},
                        key=KEYS["read"])
    assert response.status_code == 200
    after = item_ids(api.get(url))
    assert before[0] not in after and len(after) == 5


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
