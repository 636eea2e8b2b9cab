"""Exactly once (issue 12.1): whichever step of the event write path Redis dies at, a batch retried with the
same event ids ends with each event in the stream once, and every batch answered 2xx is in it already.

Both protocols are checked on a real single Redis: the one script of a single Redis (``_INGEST``) and the four
single-slot steps a cluster needs (forced with ``EventWriter.one_script = False``; ``tests/test_cluster.py``
runs them on a real cluster). Redis "dies" through a real TCP proxy (``tests/tcp_proxy.py``) cut just before,
or just after, a given step reaches the real Redis behind it - no mock.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import redis
from flask import Flask

from redis_state import keys
from service.domain.events import Event, stream_entry
from service.infrastructure import event_writes
from service.infrastructure.embedded_redis import EmbeddedRedis
from tests.service_helpers import ApiClient, TrainedModel, event
from tests.tcp_proxy import CuttableProxy

pytest_plugins = ["tests.service_helpers"]

#: (step name, bytes that identify the step's command on the wire); "ingest" is the single Redis' one script
STEPS = [
    ("ingest", event_writes._INGEST.sha.encode()),
    ("accept", event_writes._ACCEPT.sha.encode()),
    ("append", event_writes._APPEND.sha.encode()),
    ("commit", event_writes._COMMIT.sha.encode()),
    ("grace", event_writes._GRACE.sha.encode()),
]


def use_protocol(app: Flask, one_script: bool) -> None:
    app.extensions["tailor"].repository.events.one_script = one_script


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, redis_url: str) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(redis_server.port)
    yield proxy
    proxy.close()


def batch(tag: str, item: str) -> list[dict]:
    """10 events of 3 customers, every kind of write (live, session, neither, feedback-less click)."""
    out = []
    for i in range(10):
        kind = ("purchase", "view", "click", "impression", "add_to_cart")[i % 5]
        out.append(event(f"{tag}-e{i}", f"{tag}-c{i % 3}", kind, item if kind != "impression" else None))
    return out


def stream_ids(client: redis.Redis) -> Counter:
    return Counter((fields[b"customer_id"].decode(), fields[b"event_id"].decode())
                   for _, fields in client.xrange(keys.EVENTS_STREAM))


def send_until_2xx(api: ApiClient, proxy: CuttableProxy, events: list[dict]) -> list[tuple[int, dict]]:
    answers = []
    for _ in range(50):
        response = api.post("/v1/events", json=events)
        answers.append((response.status_code, response.get_json()))
        if response.status_code < 300:
            return answers
        proxy.heal()
        time.sleep(0.06)  # past the breaker's reset
    raise AssertionError(f"never answered 2xx: {answers[-3:]}")


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("step", [name for name, _ in STEPS])
def test_redis_dies_at_each_step_and_the_retry_lands_each_event_once(
        step: str, after: bool, make_app: Callable[..., Flask], retail: TrainedModel, proxy: CuttableProxy,
        redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=proxy.url, TAILOR_CUSTOMER_CACHE_SIZE="0", TAILOR_BREAKER_RESET_S="0.05",
                   TAILOR_REDIS_WRITE_TIMEOUT_MS="1000", TAILOR_MODEL_POLL_S="5")
    use_protocol(app, one_script=step == "ingest")
    api = ApiClient(app)
    item = retail.popular_items()[0]
    assert api.post("/v1/events", json=[event("warm", "warm", "view", item)]).status_code == 200
    events = batch(f"{step}-{after}", item)
    pattern = dict(STEPS)[step]
    proxy.cut_on(pattern, after=after)
    caplog.set_level(logging.WARNING)

    first = api.post("/v1/events", json=events)
    assert proxy.cuts == 1, "the proxy was cut at the step"
    expected = {(e["customer_id"], e["event_id"]) for e in events}
    if first.status_code < 300:  # the events are in the stream already
        assert step in ("commit", "grace") and first.get_json()["accepted"] == 10
        assert stream_ids(redis_client) == Counter(expected) + Counter({("warm", "warm"): 1})
    else:
        assert first.status_code == 503 and step in ("ingest", "accept", "append")

    proxy.heal()
    time.sleep(0.06)
    answers = send_until_2xx(api, proxy, events)
    assert answers[-1][0] == 200
    counts = stream_ids(redis_client)
    assert all(counts[pair] == 1 for pair in expected), {p: counts[p] for p in expected if counts[p] != 1}
    assert sum(counts.values()) == 11
    # every later send is a duplicate, and leaves the stream alone
    assert api.post("/v1/events", json=events).get_json() == {"received": 10, "accepted": 0, "duplicates": 10,
                                                                   "unattributed": 0}
    assert sum(stream_ids(redis_client).values()) == 11
    for customer, purchase in (("c0", "e0"), ("c2", "e5")):
        live = redis_client.hgetall(keys.customer_live(f"{step}-{after}-{customer}"))
        assert set(live) == {f"{step}-{after}-{purchase}".encode()}, "the purchase recorded"
    session = redis_client.hgetall(keys.customer_session(f"{step}-{after}-c1"))
    assert item.encode() in session, "views recorded"


@pytest.mark.parametrize("one_script", [True, False], ids=["one-script", "four-steps"])
def test_a_retry_racing_the_first_attempt_appends_once(make_app: Callable[..., Flask], retail: TrainedModel,
                                                      redis_client: redis.Redis, one_script: bool) -> None:
    """Three sends of one batch at once (a client that timed out and retried): the stream gets each event once."""
    import threading

    app = make_app(TAILOR_CUSTOMER_CACHE_SIZE="0")
    use_protocol(app, one_script)
    item = retail.popular_items()[0]
    for round_ in range(20):
        events = batch(f"race{round_}", item)
        barrier = threading.Barrier(3)
        answers: list[int] = []

        def send(events: list[dict] = events, barrier: threading.Barrier = barrier,
                 answers: list[int] = answers) -> None:
            client = ApiClient(app)
            barrier.wait()
            answers.append(client.post("/v1/events", json=events).status_code)

        threads = [threading.Thread(target=send) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200, 200, 200]
    counts = stream_ids(redis_client)
    assert len(counts) == 200 and set(counts.values()) == {1}


@pytest.mark.parametrize("one_script", [True, False], ids=["one-script", "four-steps"])
def test_pending_markers_of_an_old_attempt_are_completed(api: ApiClient, retail: TrainedModel,
                                                         redis_client: redis.Redis, one_script: bool) -> None:
    """A marker left pending (a four-step attempt died after the customer's script) is completed by the retry
    under either protocol, and a marker written before these schemes (a timestamp) counts as a duplicate."""
    use_protocol(api.app, one_script)
    item = retail.popular_items()[0]
    redis_client.set(keys.event_seen("old", "o1"), "1712345678.123", ex=60)
    redis_client.set(keys.event_seen("new", "n1"), "p", ex=60)
    body = api.post("/v1/events", json=[event("o1", "old", "view", item), event("n1", "new", "view", item)])
    assert body.get_json() == {"received": 2, "accepted": 1, "duplicates": 1, "unattributed": 0}
    assert stream_ids(redis_client) == Counter({("new", "n1"): 1})
    assert redis_client.get(keys.event_seen("new", "n1")) == b"c"
    assert 0 < redis_client.ttl(keys.event_appended("new", "n1")) <= event_writes.APPENDED_GRACE_S


def test_repeated_warnings_are_rate_limited() -> None:
    from service.app.logs import RepeatLimiter

    now = [0.0]
    limiter = RepeatLimiter(interval_s=10, clock=lambda: now[0])
    records = [logging.LogRecord("tailor.repository", logging.WARNING, __file__, 1,
                                 "could not commit the idempotency markers: %s", ("down",), None)
               for _ in range(1000)]
    passed = [r for r in records if limiter.filter(r)]
    assert len(passed) == 1
    now[0] = 11.0
    later = logging.LogRecord("tailor.repository", logging.WARNING, __file__, 1,
                              "could not commit the idempotency markers: %s", ("down",), None)
    assert limiter.filter(later) and "999 similar warnings suppressed" in later.getMessage()
    error = logging.LogRecord("tailor.api", logging.ERROR, __file__, 1, "boom", (), None)
    assert limiter.filter(error) and limiter.filter(error), "errors are never dropped"


@pytest.mark.parametrize("one_script", [True, False])
def test_both_protocols_write_the_stream_entry_and_hashes_the_events_define(
        make_app: Callable[..., Flask], redis_client: redis.Redis, one_script: bool) -> None:
    """For every combination of optional fields (the one script rebuilds the stream entry from their values
    and a shape; the four steps send it whole), the stream holds ``stream_entry``'s fields in its order and
    the customers' hashes hold ``_write_args``' writes."""
    writer = make_app().extensions["tailor"].repository.events
    writer.one_script = one_script
    events = []
    for shape in range(16):
        has_item, has_quantity, has_price, has_decision = (shape >> bit & 1 for bit in range(4))
        kind = ("purchase", "view", "add_to_cart")[shape % 3] if has_item else ("click", "conversion")[shape % 2]
        events.append(Event(f"shape-{shape}", f"customer-{shape % 5}", kind, datetime(2011, 12, 9, 12, shape),
                            item_id=f"item-{shape}" if has_item else None,
                            quantity=2.5 if has_quantity else None, price=1.25 if has_price else None,
                            decision_id=f"decision-{shape}" if has_decision else None))
    result = writer.ingest(events)
    assert (result.accepted, result.duplicates) == (16, 0)
    entries = redis_client.xrange(keys.EVENTS_STREAM)
    assert len(entries) == 16
    for event_, (_, raw) in zip(events, entries, strict=True):
        written = [(field.decode(), value.decode()) for field, value in raw.items()]
        expected = stream_entry(event_, written[4][1])
        assert written == list(zip(expected[::2], expected[1::2], strict=True))
        assert written[4][0] == "received_at" and re.fullmatch(r"\d+\.\d{3}", written[4][1])
        kind, field, value = event_writes._write_args(event_)
        if kind != "-":
            where = keys.customer_live if kind == "l" else keys.customer_session
            assert redis_client.hget(where(event_.customer_id), field) == (
                value.encode() if isinstance(value, str) else value)
