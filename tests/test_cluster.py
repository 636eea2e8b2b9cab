"""Tailor on a real Redis Cluster (``TAILOR_REDIS_CLUSTER=true``): three primaries started from the machine's
``redis-server`` (``--cluster-enabled yes``, joined by ``redis-cli --cluster create``) on free loopback ports,
plus one replica for the failover test.

The HTTP contract tests, the exact-budget tests under 200 concurrent requests, events idempotency, the model
swap under load and the batch export reading the service's events are the single-node tests themselves,
imported here: in this module the ``redis_url``
and ``redis_client`` fixtures name the cluster, so every app, publish and assertion goes through cluster
clients. Kept focused: one cluster per test session (per xdist worker), emptied between tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from redis.cluster import RedisCluster

from redis_state import keys
from redis_state.versions import connect, delete_version
from service.infrastructure.embedded_redis import EmbeddedCluster
from tests.test_api_events import (  # noqa: F401  (re-run against the cluster)
    test_an_event_is_identified_by_customer_and_event_id,
    test_events_are_idempotent_on_event_id,
    test_purchase_is_excluded_from_discovery_at_once,
    test_stream_entries_are_what_the_retraining_job_reads,
    test_unknown_customer_with_events_gets_session_recommendations,
)
from tests.test_api_models import test_activate_and_rollback, test_list_and_active  # noqa: F401
from tests.test_api_promotions import (  # noqa: F401
    test_budget_holds_under_200_concurrent_requests,
    test_cap_holds_under_200_concurrent_requests,
    test_conversion_event_counts_one_redemption,
    test_crud,
    test_preview_answers_exactly_what_the_real_call_would,
)
from tests.test_api_recommendations import (  # noqa: F401
    test_basket_recommendations_exclude_the_basket,
    test_exclude_purchased_returns_only_discovery,
    test_known_customer_gets_personalized_items_with_metadata_and_reasons,
    test_popular_global_and_by_country,
    test_similar_items,
    test_unknown_customer_without_events_gets_the_popular_list,
)
from tests.test_api_resilience import test_hot_swap_while_requests_run  # noqa: F401
from tests.test_audience_recent_buyers import (  # noqa: F401
    fresh,
    test_a_customer_who_reordered_is_no_longer_due,
    test_audiences_stay_exact_over_many_rounds_of_purchases,
    test_newcomers_join_and_totals_count_new_orders,
    test_only_changed_live_hashes_are_read_again,
)
from tests.test_recommend_live_events import test_customers_with_events_get_the_api_answer  # noqa: F401
from training.publish import publish_model

if TYPE_CHECKING:
    from tests.marketing_support import Service
    from tests.service_helpers import Models

pytest_plugins = ["tests.service_helpers", "tests.marketing_support"]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), primaries=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_url(redis_cluster: EmbeddedCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """The cluster (emptied), and cluster mode for every client this test makes."""
    monkeypatch.setenv("TAILOR_REDIS_CLUSTER", "true")
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[RedisCluster]:
    client = connect(redis_url)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


def _keys_per_primary(cluster: EmbeddedCluster, pattern: str) -> list[int]:
    counts = []
    for node in cluster.primary_nodes():
        with redis.Redis(port=node.port) as client:
            counts.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
    return counts


def test_publish_spreads_customers_and_delete_visits_every_primary(redis_cluster: EmbeddedCluster,
                                                                   redis_client: RedisCluster,
                                                                   models: Models) -> None:
    first = publish_model(redis_client, models.retail.path)
    publish_model(redis_client, models.retail_popular.path)
    spread = _keys_per_primary(redis_cluster, f"tailor:hist:{first}:*")
    assert sum(spread) == 300 and min(spread) > 50, spread  # 300 customers over 3 primaries
    delete_version(redis_client, first)
    assert _keys_per_primary(redis_cluster, f"tailor:hist:{first}:*") == [0, 0, 0]
    assert _keys_per_primary(redis_cluster, f"tailor:model:{{m:{first}}}:*") == [0, 0, 0]


def test_cli_publish_models_and_events_reader(redis_url: str, models: Models, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from tailor.cli import main

    assert main(["-q", "publish", "--model", str(models.retail.path), "--redis-url", redis_url]) == 0
    assert main(["models", "--redis-url", redis_url, "list", "--json"]) == 0
    assert models.retail.version in capsys.readouterr().out
    client = connect(redis_url)
    client.xadd(keys.EVENTS_STREAM, {"event_id": "e1", "customer_id": "c1", "item_id": "85123A", "type": "purchase",
                                     "timestamp": "2011-12-10T10:00:00Z", "quantity": "1", "price": "2.5"})
    from training.events import read_stream_purchases

    assert list(read_stream_purchases(client)["order_id"]) == ["event:e1"]
    assert main(["config", "--json"]) == 0
    assert '"TAILOR_REDIS_CLUSTER": true' in capsys.readouterr().out


def _name_on(port: int, key_of: Callable[[str], str]) -> str:
    """The first name ``fo<i>`` whose key ``key_of(name)`` hashes to a slot of the primary on ``port``."""
    with redis.Redis(port=port) as client:
        owned = [(lo, hi) for lo, hi, primary, *_ in client.execute_command("CLUSTER", "SLOTS") if primary[1] == port]
    for i in range(10_000):
        slot = redis.crc.key_slot(key_of(f"fo{i}").encode())
        if any(lo <= slot <= hi for lo, hi in owned):
            return f"fo{i}"
    raise AssertionError(f"no slot of port {port}")


@pytest.mark.slow
def test_failover_under_load_loses_no_event_and_no_budget_count(redis_cluster: EmbeddedCluster,
                                                                service: Service) -> None:
    """``CLUSTER FAILOVER`` on a replica while recommendations, events and promotions run: every request
    answers 2xx, every acknowledged event is in the stream and in its customer's live hash, and the
    promotion's impression counter equals the impressions served."""
    primary = redis_cluster.nodes[0]
    replica = redis_cluster.add_replica(of=0) if len(redis_cluster.nodes) == 3 else redis_cluster.nodes[3]
    with redis.Redis(port=replica.port) as r:
        if r.info("replication")["role"] == "master":  # a previous run swapped them: fail back first
            primary, replica = replica, primary
    promo = _name_on(primary.port, keys.promotion_stats)
    from tests.test_api_promotions import body

    assert service.put(f"/v1/promotions/{promo}", body(service, budget={"impressions": 10_000})).status_code == 201
    statuses: list[int] = []
    acked: list[tuple[str, str]] = []
    served = [0]
    lock = threading.Lock()
    stop = threading.Event()
    item = service.items[0]

    def work(worker: int) -> None:
        client = service.app.test_client()
        n = 0
        while not stop.is_set():
            n += 1
            customer = service.customers[(worker * 31 + n) % len(service.customers)]
            event_id = f"fo-{worker}-{n}-{uuid.uuid4().hex[:6]}"
            ev = client.post("/v1/events", headers=service.headers("read"), json={"events": [
                {"event_id": event_id, "customer_id": customer, "type": "purchase", "item_id": item,
                 "timestamp": "2011-12-10T10:00:00Z"}]})
            rec = client.get(f"/v1/customers/{customer}/recommendations?n=5", headers=service.headers("read"))
            pro = client.get(f"/v1/customers/{customer}/promotions", headers=service.headers("read"))
            with lock:
                statuses.extend((ev.status_code, rec.status_code, pro.status_code))
                if ev.status_code == 200 and ev.get_json()["accepted"] == 1:
                    acked.append((customer, event_id))
                if pro.status_code == 200:
                    served[0] += sum(p["promotion_id"] == promo for p in pro.get_json()["promotions"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(work, w) for w in range(8)]
        time.sleep(1.0)
        with redis.Redis(port=replica.port) as r:
            r.execute_command("CLUSTER", "FAILOVER")
            deadline = time.monotonic() + 20
            while r.info("replication")["role"] != "master":
                assert time.monotonic() < deadline, "the replica was not promoted"
                time.sleep(0.05)
        time.sleep(1.5)
        stop.set()
        for future in futures:
            future.result()

    print(f"failover: {len(statuses)} requests, {len(acked)} events acknowledged, {served[0]} impressions")
    assert acked and served[0] > 0
    assert all(200 <= s < 300 for s in statuses), sorted({s for s in statuses})
    client = connect(redis_cluster.url)
    stream_ids = {fields[b"event_id"].decode() for _, fields in client.xrange(keys.EVENTS_STREAM)}
    missing = [e for _, e in acked if e not in stream_ids]
    assert not missing, f"{len(missing)} acknowledged events not in the stream"
    for customer, event_id in acked:
        assert client.hexists(keys.customer_live(customer), event_id), (customer, event_id)
    assert int(client.hget(keys.promotion_stats(promo), "impressions")) == served[0]


def test_read_ahead_fills_the_rank_memo_across_the_cluster(make_app: Callable[..., object],
                                                           redis_client: RedisCluster, models: Models) -> None:
    """The customer cache is off in cluster mode; reading ahead still derives every customer's scoring rows,
    reading the customers from all three primaries, and the rank answers stay those of full scoring."""
    from tests.service_helpers import ApiClient

    publish_model(redis_client, models.retail.path)
    app = make_app()
    tailor = app.extensions["tailor"]
    customers = models.retail.artifact.customer_ids.tolist()
    assert not tailor.repository.customers.enabled
    assert tailor.read_ahead.run(tailor.engine.serving()) == len(customers) == len(tailor.engine.customer_rows)
    ahead, plain = ApiClient(app), ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0"))
    page = {"items": models.retail.popular_items()[:8]}
    for customer in customers:
        url = f"/v1/customers/{customer}/rank"
        assert ahead.post(url, json=page).get_json() == plain.post(url, json=page).get_json(), customer
