"""No false alarms (issue 12.2): background work never opens the request path's circuit breaker.

Redis is healthy but loaded: another client keeps running slow scripts (200 ms of busy work every 0.5 s,
the kind of stall a big command of another tenant causes). Requests whose timeouts outlast such a stall -
event writes (500 ms) and customers the worker's cache holds - must all succeed. The model poller meets
some of the stalls; it must not turn them into 503s or fallbacks for the requests that arrive meanwhile
(event senders with some think time arrive during a stall, as a real server's clients do).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis
from flask import Flask

from tests.service_helpers import KEYS, TrainedModel, event, wait_for

pytest_plugins = ["tests.service_helpers"]

#: A slow command of another client: keeps Redis busy for ARGV[1] ms (a healthy server, just loaded).
BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000 + t[2] / 1000
repeat t = redis.call('TIME') until t[1] * 1000 + t[2] / 1000 - start >= tonumber(ARGV[1])
return 1
"""

REQUESTS = 20_000
MIN_EVENTS = 2_000


def test_20k_requests_on_a_loaded_redis_see_no_503_and_no_fallback(
        make_app: Callable[..., Flask], retail: TrainedModel, redis_url: str) -> None:
    # The production timeouts (50 ms reads, 500 ms writes) and poll interval (0.25 s).
    app = make_app(TAILOR_REDIS_TIMEOUT_MS="50", TAILOR_REDIS_WRITE_TIMEOUT_MS="500", TAILOR_MODEL_POLL_S="0.25")
    tailor = app.extensions["tailor"]
    customers = [str(c) for c in retail.artifact.customer_ids[:50]]
    item = retail.popular_items()[0]
    headers = {"Authorization": f"Bearer {KEYS['read']}"}
    cache = tailor.repository.customers
    cache.start()
    wait_for(lambda: cache.ready, timeout=10)  # values read before tracking is on are not kept
    warm = app.test_client()
    for customer in customers:  # into the worker's customer cache (kept exact by Redis' invalidations)
        assert warm.get(f"/v1/customers/{customer}/recommendations?n=5", headers=headers).status_code == 200
    assert cache.ready and len(cache) == len(customers), "every customer of the test is cached"

    stop = threading.Event()
    stalls = Counter()

    def load() -> None:
        client = redis.Redis.from_url(redis_url)
        while not stop.wait(0.5):
            client.eval(BUSY, 0, 200)
            stalls["busy"] += 1

    statuses: Counter = Counter()
    sources: Counter = Counter()
    lock = threading.Lock()
    sent = Counter()

    def done() -> bool:
        return sent["all"] >= REQUESTS and sent["events"] >= MIN_EVENTS

    def record(status: int, source: str | None, kind: str) -> None:
        with lock:
            statuses[status] += 1
            sent["all"] += 1
            sent[kind] += 1
            if source:
                sources[source] += 1

    def recommendations(worker: int) -> None:
        client = app.test_client()
        n = worker
        while not done():
            n += 1
            response = client.get(f"/v1/customers/{customers[n % len(customers)]}/recommendations?n=5",
                                  headers=headers)
            record(response.status_code, response.get_json().get("source") if response.status_code == 200 else None,
                   "recommendations")
            time.sleep(0.001)

    def events(worker: int) -> None:
        client = app.test_client()
        rng = random.Random(worker)
        n = 0
        while not done():
            n += 1
            response = client.post("/v1/events", json=[event(f"ev-{worker}-{n}", f"writer-{worker}", "view", item)],
                                   headers=headers)
            record(response.status_code, None, "events")
            time.sleep(rng.uniform(0, 0.15))  # think time: some senders arrive in the middle of a stall

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    started = time.monotonic()
    threads = [threading.Thread(target=recommendations, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=events, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    loader.join()
    took = time.monotonic() - started

    assert sent["all"] >= REQUESTS and sent["events"] >= MIN_EVENTS
    assert stalls["busy"] >= 10, f"Redis was loaded ({stalls['busy']} stalls of 200 ms in {took:.1f}s)"
    assert statuses[503] == 0, (statuses, sources, sent)
    assert sources["popular-fallback"] == 0, (statuses, sources)
    assert set(statuses) == {200}, statuses
    assert not tailor.gateway.breaker.is_open
