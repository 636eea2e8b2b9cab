"""Audiences count the purchases received as events since the model's data, in the API and in `tailor audience
--redis-url` alike: a customer who re-ordered is no longer due, one the model does not know who bought joins,
totals (orders, spend, journey stage) include the new purchases, and nobody else's score moves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import redis

from scoring import audience
from scoring.artifact import read_artifact
from scoring.recent_buyers import carried, with_recent
from tailor.cli import main
from tests.test_audience_cli import api_audience, cli_audience
from training.audience import population

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]


def serve(redis_url: str, redis_client: redis.Redis, model: Path, **config: Any) -> Service:
    """The marketing fixture's app with ``config`` on top (environment names)."""
    from service import create_app
    from tests.marketing_support import KEYS, Service
    from training.publish import publish_model

    publish_model(redis_client, model)
    app = create_app({"REDIS_URL": redis_url, "TAILOR_API_KEYS": ",".join(f"{k}:{s}" for s, k in KEYS.items()),
                      "TAILOR_REDIS_TIMEOUT_MS": 2000, "TAILOR_REDIS_WRITE_TIMEOUT_MS": 5000, **config})
    app.extensions["tailor"].store.start()
    customers = [str(c) for c in np.load(model / "customer_ids.npy")]
    items = [str(i) for i in np.load(model / "item_ids.npy")]
    return Service(app, app.test_client(), redis_client, customers, items)


@pytest.fixture
def fresh(redis_url: str, redis_client: redis.Redis, sample_model: Path) -> Iterator[Service]:
    """The marketing fixture's app, reading the recent buyers at every audience (no refresh lag)."""
    service = serve(redis_url, redis_client, sample_model, TAILOR_AUDIENCE_REFRESH_S=0)
    yield service
    service.app.extensions["tailor"].close()


def after_data(model: Path, days: float) -> str:
    manifest = json.loads((model / "manifest.json").read_text())
    return (datetime.fromisoformat(manifest["data"]["last_timestamp"]) + timedelta(days=days)).isoformat()


def buy(service: Service, model: Path, purchases: list[tuple[str, str, float]], price: float | None = None) -> None:
    events = [{"event_id": f"buy-{customer}-{item}-{days}", "customer_id": customer, "type": "purchase",
               "item_id": item, "timestamp": after_data(model, days), "quantity": 1,
               **({"price": price} if price is not None else {})}
              for customer, item, days in purchases]
    answer = service.events(events)
    assert answer.status_code in (200, 202), answer.get_data(as_text=True)


def ids(rows: list[tuple[str, float, str]]) -> list[str]:
    return [c for c, _, _ in rows]


def test_a_customer_who_reordered_is_no_longer_due(fresh: Service, sample_model: Path, tmp_path: Path,
                                                   redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Customer 14745 is due to re-order 23300 (83 days overdue); after buying it a day after the data they are
    not, in the API and in the CLI reading the same Redis; the model directory alone still lists them."""
    body = {"items": ["23300"], "due_for_reorder": True, "size": 100}
    args = ("--items", "23300", "--due-for-reorder", "--size", "100")
    assert ids(api_audience(fresh, body)) == ["14745"]
    anyone = api_audience(fresh, {"due_for_reorder": True, "size": 5000})
    assert "14745" in ids(anyone)
    buy(fresh, sample_model, [("14745", "23300", 1)])
    assert api_audience(fresh, body) == []
    redis = ("--redis-url", redis_url)
    assert cli_audience(sample_model, tmp_path / "a.csv", *args, *redis) == []
    assert ids(cli_audience(sample_model, tmp_path / "a.csv", *args)) == ["14745"]
    # due for something else, maybe, but no longer for 23300
    after = api_audience(fresh, {"due_for_reorder": True, "size": 5000})
    assert not [r for c, _, r in after if c == "14745" and "(23300)" in r]
    assert after == cli_audience(sample_model, tmp_path / "b.csv", "--due-for-reorder", "--size", "5000", *redis)
    capsys.readouterr()
    assert main(["audience", "--model", str(sample_model), *args, *redis, "--output", str(tmp_path / "c.csv")]) == 0
    assert "scored 300 customers, 1 of them with purchases since training in " in capsys.readouterr().err


def test_newcomers_join_and_totals_count_new_orders(fresh: Service, sample_model: Path, tmp_path: Path,
                                                     redis_url: str) -> None:
    """A customer the model does not know who bought an item joins its audience ("bought it in 2 orders"); a
    known one-order customer becomes a repeat buyer for eligibility; the CLI answers the same."""
    artifact = read_artifact(sample_model)
    orders = np.asarray(artifact.customers.orders)
    once = str(artifact.customer_ids[int(np.flatnonzero(orders == 1)[0])])
    item = str(artifact.item_ids[int(np.argmax(np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel()))])
    body = {"items": [item], "size": 2000}
    before = api_audience(fresh, body)
    repeat = {"journey_stages": ["repeat"]}
    assert once not in ids(api_audience(fresh, {**body, "eligibility": repeat}))
    buy(fresh, sample_model, [("walk-in-7", item, 1), ("walk-in-7", item, 2), (once, item, 1)], price=3.5)
    after = api_audience(fresh, body)
    newcomer = next(r for r in after if r[0] == "walk-in-7")
    assert "in 2 orders" in newcomer[2] and "walk-in-7" not in ids(before)
    assert once in ids(api_audience(fresh, {**body, "eligibility": repeat}))
    spender = api_audience(fresh, {**body, "eligibility": {"customers": ["walk-in-7"], "min_spend": 7}})
    assert ids(spender) == ["walk-in-7"]  # two purchases at 3.5
    redis = ("--redis-url", redis_url)
    assert after == cli_audience(sample_model, tmp_path / "a.csv", "--items", item, "--size", "2000", *redis)
    assert api_audience(fresh, {**body, "eligibility": repeat}) == cli_audience(
        sample_model, tmp_path / "a.csv", "--items", item, "--size", "2000", *redis, "--eligibility",
        json.dumps(repeat))
    # everybody else keeps their score
    untouched = {c: s for c, s, _ in before if c != once}
    assert {c: s for c, s, _ in after if c in untouched} == untouched
    lookalike = api_audience(fresh, {"lookalike": ["walk-in-7"], "size": 10})
    assert len(lookalike) == 10 and "walk-in-7" not in ids(lookalike)
    assert lookalike == cli_audience(sample_model, tmp_path / "a.csv", "--lookalike", "walk-in-7", "--size", "10",
                                     *redis)


def test_purchases_before_the_data_end_and_other_events_change_nothing(fresh: Service, sample_model: Path) -> None:
    """Live purchases already in the model's data, views and carts leave every audience as it was."""
    body = {"due_for_reorder": True, "size": 5000}
    before = api_audience(fresh, body)
    buy(fresh, sample_model, [("14745", "23300", -3)])
    answer = fresh.events([{"event_id": "v1", "customer_id": "14745", "type": "view", "item_id": "23300",
                            "timestamp": after_data(sample_model, 1)}])
    assert answer.status_code in (200, 202)
    assert api_audience(fresh, body) == before


def test_the_lag_is_the_refresh_setting(service: Service, sample_model: Path) -> None:
    """With the default TAILOR_AUDIENCE_REFRESH_S a worker reuses its read: a purchase right after an audience
    shows only once the read is older than the setting."""
    from service.usecases.audiences import audiences

    body = {"items": ["23300"], "due_for_reorder": True, "size": 100}
    assert ids(api_audience(service, body)) == ["14745"]
    buy(service, sample_model, [("14745", "23300", 1)])
    assert ids(api_audience(service, body)) == ["14745"]  # within the lag
    recent = audiences(None, service.app.extensions).recent  # type: ignore[arg-type]
    assert recent.refresh_s == 10
    recent.clock = lambda: float("inf")  # the read is now older than any lag
    assert api_audience(service, body) == []


def test_merged_scores_equal_scoring_everybody_again(sample_model: Path) -> None:
    """Patching the changed customers' scores gives what scoring the whole merged population gives."""
    from service.domain.customer import CustomerState, LivePurchase, recent_buyer
    from training.publish import customer_record

    artifact = read_artifact(sample_model)
    base = population(artifact)
    order = np.argsort(base.customer_ids, kind="stable")
    base = base.rows(order)
    end = float(artifact.history.now_day)
    picked = [3, 17, 40]
    states = [CustomerState(str(artifact.customer_ids[r]), customer_record(artifact, r),
                            [LivePurchase(str(artifact.item_ids[5 + k]), end + 1 + k, 2.0, 1.0) for k in range(3)])
              for r in picked]
    states.append(CustomerState("zz-new", None, [LivePurchase(str(artifact.item_ids[0]), end + 2, 1.0, None)]))
    buyers = [b for s in states if (b := recent_buyer(s, artifact.item_index, artifact.items, end)) is not None]
    assert len(buyers) == 4
    merged = with_recent(base, sorted(buyers, key=lambda b: b.customer_id))
    changed = np.isin(merged.customer_ids, [b.customer_id for b in buyers])
    assert len(merged) == len(base) + 1 and changed.sum() == 4
    targets = np.asarray([0, 5, 6, 9])

    def affinity(customers: audience.Population) -> audience.Scored:
        return audience.item_affinity(artifact.model, customers, targets)

    mixed = carried(affinity(base), base.customer_ids, merged, changed, affinity)
    whole = affinity(merged)
    for name in ("score", "item", "bought"):
        np.testing.assert_allclose(getattr(mixed, name), getattr(whole, name), rtol=1e-6)
    row = int(np.searchsorted(merged.customer_ids, states[0].customer_id))
    assert merged.orders[row] == artifact.customers.orders[picked[0]] + 3
    # carried again from the merged scores to the published records: everyone who changed back is rescored
    back = carried(mixed, merged.customer_ids, base, np.isin(base.customer_ids, [b.customer_id for b in buyers]),
                   affinity)
    for name in ("score", "item", "bought"):
        np.testing.assert_allclose(getattr(back, name), getattr(affinity(base), name), rtol=1e-6)


def test_audiences_stay_exact_over_many_rounds_of_purchases(fresh: Service, sample_model: Path, tmp_path: Path,
                                                            redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round of purchases rescoring only its own buyers still gives the audience of scoring everybody on the
    current data (the CLI reads everything afresh)."""
    scored: list[int] = []
    real = audience.item_affinity

    def counted(model: Any, customers: audience.Population, *args: Any, **kw: Any) -> audience.Scored:
        scored.append(len(customers))
        return real(model, customers, *args, **kw)

    monkeypatch.setattr(audience, "item_affinity", counted)
    artifact = read_artifact(sample_model)
    item = str(artifact.item_ids[int(np.argmax(np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel()))])
    other = str(artifact.item_ids[7])
    body = {"items": [item], "size": 3000}
    redis = ("--redis-url", redis_url)
    for round_ in range(4):
        buyers = [*fresh.customers[round_ * 5:round_ * 5 + 5], f"walk-in-{round_}", "walk-in-0"]
        buy(fresh, sample_model, [(c, item if k % 2 else other, 1 + round_) for k, c in enumerate(buyers)])
        expected = cli_audience(sample_model, tmp_path / "a.csv", "--items", item, "--size", "3000", *redis)
        scored.clear()
        assert api_audience(fresh, body) == expected, round_
        # the first audience scores the published customers, then its buyers; later ones only the round's buyers
        assert scored == ([len(artifact.customer_ids)] if round_ == 0 else []) + [len(set(buyers))]
    assert "walk-in-3" in ids(expected)
    # live purchases that expire: the known customer is back on the published record, the newcomer leaves
    from redis_state import keys

    fresh.redis.delete(keys.customer_live(fresh.customers[0]), keys.customer_live("walk-in-0"))
    expected = cli_audience(sample_model, tmp_path / "a.csv", "--items", item, "--size", "3000", *redis)
    scored.clear()
    assert api_audience(fresh, body) == expected and "walk-in-0" not in ids(expected)
    assert scored == [1]


def test_cli_reads_no_redis_without_the_flag(sample_model: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """Without --redis-url or --promotion-id the model directory alone answers (a Redis URL that cannot be
    reached is never tried)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    out = tmp_path / "a.csv"
    assert main(["-q", "audience", "--model", str(sample_model), "--due-for-reorder", "--size", "3",
                 "--output", str(out)]) == 0


def test_due_follows_the_wall_clock(redis_url: str, redis_client: redis.Redis, sample_model: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With TAILOR_CLOCK=wall a remembered re-order audience does not outlive the day it was computed on: ten days
    later the same customer is ten days more overdue."""
    import time

    service = serve(redis_url, redis_client, sample_model, TAILOR_CLOCK="wall")
    try:
        body = {"items": ["23300"], "due_for_reorder": True, "size": 10}

        def overdue() -> int:
            (reason,) = [r for c, _, r in api_audience(service, body) if c == "14745"]
            return int(reason.split(": ")[1].split(" days")[0])

        today = overdue()
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 10 * 86_400)
        assert overdue() == today + 10
    finally:
        service.app.extensions["tailor"].close()


def test_only_changed_live_hashes_are_read_again(fresh: Service, sample_model: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh asks every live hash its length and reads again only those that grew; every FULL_READ_S it
    reads everyone."""
    from service.infrastructure import recent_buyers as module
    from service.usecases.audiences import audiences

    reads: list[list[str]] = []
    real = module.read_buyers

    def spied(client: Any, customers: Any, *args: Any) -> Any:
        reads.append(sorted(customers))
        return real(client, customers, *args)

    monkeypatch.setattr(module, "read_buyers", spied)
    body = {"due_for_reorder": True, "size": 10}
    buy(fresh, sample_model, [("14745", "23300", 1), ("walk-in-9", "23300", 1)])
    api_audience(fresh, body)
    api_audience(fresh, body)
    buy(fresh, sample_model, [("walk-in-9", "23300", 2)])
    api_audience(fresh, body)
    audiences(None, fresh.app.extensions).recent.full_read_s = 0  # type: ignore[arg-type]
    api_audience(fresh, body)
    assert reads == [["14745", "walk-in-9"], [], ["walk-in-9"], ["14745", "walk-in-9"]]
