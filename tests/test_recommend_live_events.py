"""`tailor recommend --redis-url` answers what the API answers *now*: customers who bought, viewed or carted items
since training (events received by the service) get the lists GET /v1/customers/{id}/recommendations gives
them, scores and source included; customers without events keep the model directory's lists."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tailor.cli import main

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]

#: The API's ``source`` for each value of the export's ``source`` column.
API_SOURCE = {"personalized": "personalized", "session": "session", "popular-fallback": "popular"}


def export(model: Path, customers: list[str], tmp_path: Path, name: str, *extra: str
           ) -> dict[str, tuple[set[str], list[tuple[str, float]]]]:
    """Each customer's sources and (item, score) list, in rank order."""
    ids = tmp_path / f"{name}.txt"
    ids.write_text("\n".join(customers) + "\n")
    out = tmp_path / f"{name}.csv"
    assert main(["-q", "recommend", "--model", str(model), "--customers", str(ids), "--n", "10",
                 "--output", str(out), *extra]) == 0
    lists: dict[str, tuple[set[str], list[tuple[str, float]]]] = {}
    with open(out, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            sources, ranked = lists.setdefault(row["customer_id"], (set(), []))
            sources.add(row["source"])
            ranked.append((row["item_id"], float(row["score"])))
    return lists


def api_list(service: Service, customer: str, exclude: bool) -> tuple[str, list[tuple[str, float]]]:
    answer = service.get(f"/v1/customers/{customer}/recommendations?n=10"
                         f"{'&exclude_purchased=true' if exclude else ''}").get_json()
    return answer["source"], [(item["item_id"], float(item["score"])) for item in answer["items"]]


@pytest.mark.parametrize("exclude", [False, True])
def test_customers_with_events_get_the_api_answer(service: Service, sample_model: Path, tmp_path: Path,
                                                  redis_url: str, exclude: bool) -> None:
    flag = ["--exclude-purchased"] if exclude else []
    manifest = json.loads((sample_model / "manifest.json").read_text())
    after = datetime.fromisoformat(manifest["data"]["last_timestamp"]) + timedelta(days=2)
    buyers, viewer = service.customers[:4], service.customers[4]
    untouched = service.customers[5:9]
    newcomers = ["new-buyer", "new-viewer"]
    everyone = [*buyers, viewer, *untouched, *newcomers, "ghost-viewer", "nobody"]
    before = export(sample_model, everyone, tmp_path, "before", *flag)
    events, k = [], 0

    def event(customer: str, kind: str, item: str, days: float) -> None:
        nonlocal k
        k += 1
        events.append({"event_id": f"e{k}", "customer_id": customer, "type": kind, "item_id": item,
                       "timestamp": (after + timedelta(days=days)).isoformat(), "quantity": 2})

    for n, customer in enumerate(buyers):  # each buys its first and third recommendation, on different days
        ranked = before[customer][1]
        event(customer, "purchase", ranked[0][0], n)
        event(customer, "purchase", ranked[2][0], n + 0.5)
    event(viewer, "view", before[viewer][1][0][0], 1)
    event("new-buyer", "purchase", service.items[3], 0)
    event("new-buyer", "purchase", service.items[7], 1)
    event("new-viewer", "view", service.items[5], 0)
    event("new-viewer", "add_to_cart", service.items[11], 0.2)
    event("ghost-viewer", "view", "NOT-IN-THE-CATALOGUE", 0)  # events, but none the model can use
    event(viewer, "purchase", "NOT-IN-THE-CATALOGUE", 0.5)
    answer = service.events(events)
    assert answer.status_code == 200 and answer.get_json()["accepted"] == len(events), answer.get_data(as_text=True)

    now = export(sample_model, everyone, tmp_path, "now", *flag, "--redis-url", redis_url)
    assert list(now) == everyone
    differ = []
    for customer in everyone:
        sources, ranked = now[customer]
        assert len(sources) == 1, (customer, sources)
        expected = api_list(service, customer, exclude)
        if (API_SOURCE[next(iter(sources))], ranked) != expected:
            differ.append((customer, expected[0], expected[1][:3], ranked[:3]))
    assert not differ, differ
    # The events changed the answers of those who sent them, and of no one else.
    for customer in [*buyers, *newcomers]:
        assert now[customer][1] != before[customer][1], customer
    for customer in untouched:
        assert now[customer] == before[customer], customer
    assert now["new-viewer"][0] == {"session"} and before["new-viewer"][0] == {"popular-fallback"}
    if exclude:
        for customer in buyers:
            bought = {before[customer][1][0][0], before[customer][1][2][0]}
            assert not bought & {item for item, _ in now[customer][1]}, customer



def test_a_redis_serving_another_version_is_noted(sample_model: Path, tmp_path: Path, redis_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The lists are then the model directory's (with that Redis' deactivations and events), not the API's."""
    (tmp_path / "ids.txt").write_text("nobody\n")
    assert main(["recommend", "--model", str(sample_model), "--customers", str(tmp_path / "ids.txt"),
                 "--output", str(tmp_path / "out.csv"), "--redis-url", redis_url]) == 0
    err = capsys.readouterr().err
    assert "note: that Redis serves no model, not " in err and "not the API's answers" in err, err


def nearly_equal(got: list[tuple[str, float]], expected: list[tuple[str, float]], tolerance: float = 1e-5) -> bool:
    """The same ranking up to scores ``tolerance`` apart: rank by rank the scores agree within it, every item
    keeps its score within it, and items swap places (or cross the cut) only with items that close."""
    if len(got) != len(expected) or any(abs(a - b) > tolerance for (_, a), (_, b) in zip(got, expected, strict=True)):
        return False
    mine, theirs = dict(got), dict(expected)
    cut = expected[-1][1] if expected else 0.0
    for item in mine.keys() ^ theirs.keys():  # in one list only: must sit at the cut
        if abs(mine.get(item, theirs.get(item, cut)) - cut) > tolerance:
            return False
    return all(abs(mine[item] - theirs[item]) <= tolerance for item in mine.keys() & theirs.keys())


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TAILOR_CLOCK=wall`` for the app (created after this fixture) and for the CLI."""
    monkeypatch.setenv("TAILOR_CLOCK", "wall")


def test_the_wall_clock_shapes_the_export_as_it_shapes_the_api(wall_clock: None, service: Service,
                                                               sample_model: Path, tmp_path: Path,
                                                               redis_url: str) -> None:
    """Under the service's ``wall`` clock every purchase is years old "now": the export must age them as the API
    does. The two read the clock seconds apart, so scores may differ in the last decimal and items that close
    may swap places."""
    buyer = service.customers[0]
    answer = service.events([{"event_id": "w1", "customer_id": buyer, "type": "purchase",
                              "item_id": service.items[1], "timestamp": "2024-05-01T10:00:00"},
                             {"event_id": "w2", "customer_id": "walk-in", "type": "view",
                              "item_id": service.items[2], "timestamp": "2024-05-01T10:00:00"}])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    everyone = [*service.customers[:40], "walk-in", "nobody"]
    now = export(sample_model, everyone, tmp_path, "wall", "--redis-url", redis_url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TAILOR_CLOCK", "data")
        data_clock = export(sample_model, everyone, tmp_path, "data", "--redis-url", redis_url)
    differ = []
    for customer in everyone:
        source, expected = api_list(service, customer, exclude=False)
        sources, ranked = now[customer]
        if API_SOURCE[next(iter(sources))] != source or not nearly_equal(ranked, expected):
            differ.append((customer, expected, ranked))
    assert not differ, differ
    assert any(now[c] != data_clock[c] for c in service.customers[:40])  # the clock matters here
