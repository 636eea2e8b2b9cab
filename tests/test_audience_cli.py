"""`tailor audience` on the model trained from the shipped sample: the service's audience, in batch (the same
customers, scores and reasons as ``POST /v1/audiences`` for the same targeting and eligibility)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from scoring.artifact import read_artifact
from tailor.cli import main
from tests.service_helpers import assert_error

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]


def rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.reader(f))


def test_items_audience(sample_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = read_artifact(sample_model)
    item = str(artifact.item_ids[int(np.argmax(np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel()))])
    out = tmp_path / "audience.csv"
    assert main(["audience", "--model", str(sample_model), "--items", item, "--size", "25",
                 "--output", str(out)]) == 0
    table = rows(out)
    assert table[0] == ["customer_id", "score", "reason"] and len(table) == 26
    scores = [float(r[1]) for r in table[1:]]
    assert scores == sorted(scores, reverse=True)
    assert "customers/s" in capsys.readouterr().err


def test_modes_and_errors(sample_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.csv"
    artifact = read_artifact(sample_model)
    seeds = [str(c) for c in artifact.customer_ids[:2]]
    assert main(["audience", "--model", str(sample_model), "--lookalike", *seeds, "--size", "5",
                 "--output", str(out)]) == 0
    assert not {r[0] for r in rows(out)[1:]} & set(seeds)
    assert main(["audience", "--model", str(sample_model), "--due-for-reorder", "--size", "5",
                 "--output", str(out)]) == 0
    assert all("days overdue" in r[2] for r in rows(out)[1:])
    capsys.readouterr()
    assert main(["audience", "--model", str(sample_model), "--items", "x", "--lookalike", seeds[0], "--size", "5",
                 "--output", str(out)]) == 2
    assert "--items and --lookalike" in capsys.readouterr().err
    assert main(["audience", "--model", str(sample_model), "--items", "nope", "--size", "5",
                 "--output", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_train_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.marketing_support import SAMPLE_CSV

    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-q", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                 "--tune-budget", "0", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()


# -- the CLI's audience is the API's: eligibility, promotions --------------------------------------------
def cli_audience(model: Path, out: Path, *args: str) -> list[tuple[str, float, str]]:
    assert main(["-q", "audience", "--model", str(model), *args, "--output", str(out)]) == 0
    table = rows(out)
    assert table[0] == ["customer_id", "score", "reason"]
    return [(r[0], float(r[1]), r[2]) for r in table[1:]]


def api_audience(service: Service, body: dict[str, Any]) -> list[tuple[str, float, str]]:
    answer = service.client.post("/v1/audiences", json=body, headers=service.headers("marketing"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [(c["customer_id"], c["score"], c["reason"]) for c in answer.get_json()["customers"]]


def test_eligibility_equals_the_api(service: Service, sample_model: Path, tmp_path: Path) -> None:
    artifact = read_artifact(sample_model)
    countries = artifact.customers.countries
    busiest = np.argsort(-np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel(), kind="stable")[:5]
    items = [str(artifact.item_ids[i]) for i in busiest]
    seeds = [str(c) for c in artifact.customer_ids[:3]]
    some_countries = {"countries": [countries[2].lower(), countries[3].upper()]}  # case-insensitive
    allowed = [str(c) for c in artifact.customer_ids[::4]]
    (tmp_path / "rules.json").write_text(json.dumps({"customers": allowed, "min_orders": 4}))
    cases: list[tuple[dict[str, Any], list[str], dict[str, Any]]] = [
        ({"items": items, "size": 40}, ["--items", *items, "--size", "40"], {"min_orders": 5, "min_spend": 500}),
        ({"items": items, "size": 50}, ["--items", *items, "--size", "50"], {"journey_stages": ["lapsed"]}),
        ({"due_for_reorder": True, "size": 30}, ["--due-for-reorder", "--size", "30"],
         {"journey_stages": ["repeat", "first-time buyer"], "min_spend": 1000.5}),
        ({"items": items[:2], "min_score": 0.5}, ["--items", *items[:2], "--min-score", "0.5"], some_countries),
        ({"lookalike": seeds, "size": 20}, ["--lookalike", *seeds, "--size", "20"],
         {"@": str(tmp_path / "rules.json")}),
    ]
    index = {str(c): i for i, c in enumerate(artifact.customer_ids)}
    for body, args, rules in cases:
        flag = "@" + rules["@"] if "@" in rules else json.dumps(rules)
        api_rules = json.loads((tmp_path / "rules.json").read_text()) if "@" in rules else rules
        expected = api_audience(service, {**body, "eligibility": api_rules})
        got = cli_audience(sample_model, tmp_path / "a.csv", *args, "--eligibility", flag)
        assert got == expected, (rules, got[:3], expected[:3])
        unfiltered = cli_audience(sample_model, tmp_path / "b.csv", *args)
        assert got and got != unfiltered, rules  # each rule set admits some customers and excludes others
        admitted = [index[c] for c, _, _ in got]
        if rules is some_countries:
            assert set(artifact.customers.country[admitted].tolist()) <= {2, 3}
        if rules.get("journey_stages") == ["lapsed"]:
            assert all(artifact.history.now_day - artifact.customers.last_day[admitted] > 180)


def put_promotion(service: Service, promotion_id: str, **fields: Any) -> None:
    now = datetime.now(UTC)
    body = {"name": promotion_id, "offer": {"text": "10% off"}, "status": "active",
            "starts_at": (now - timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=9)).isoformat(),
            **fields}
    assert service.put(f"/v1/promotions/{promotion_id}", body).status_code == 201


def test_promotion_equals_the_api(service: Service, sample_model: Path, tmp_path: Path, redis_url: str) -> None:
    artifact = read_artifact(sample_model)
    index = {str(c): i for i, c in enumerate(artifact.customer_ids)}
    put_promotion(service, "repeat", items=service.items[:3], eligibility={"min_orders": 5})
    put_promotion(service, "everything", eligibility={"journey_stages": ["lapsed"]})
    redis = ["--redis-url", redis_url]
    expected = api_audience(service, {"promotion_id": "repeat", "size": 30})
    assert expected and cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "repeat", "--size", "30",
                                     *redis) == expected
    # --eligibility adds rules; the promotion's own rules that it does not name still hold
    uk = {"countries": ["UNITED KINGDOM"]}
    expected = api_audience(service, {"promotion_id": "repeat", "size": 30, "eligibility": uk})
    got = cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "repeat", "--size", "30",
                       "--eligibility", json.dumps(uk), *redis)
    assert got == expected and got
    assert all(artifact.customers.orders[index[c]] >= 5 and artifact.customers.country[index[c]] == 0
               for c, _, _ in got)
    # site-wide (every item), alone and restricted to re-orders
    for extra, body in (([], {}), (["--due-for-reorder"], {"due_for_reorder": True})):
        expected = api_audience(service, {"promotion_id": "everything", "size": 25, **body})
        got = cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "everything", "--size", "25",
                           *extra, *redis)
        assert got == expected and got, extra


def test_deactivated_items_are_left_out_as_in_the_api(service: Service, sample_model: Path, tmp_path: Path,
                                                           redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Items deactivated in Redis (PATCH /v1/items/{id}) are never targets, in the API and in the CLI alike (the CLI
    reads them from the Redis of --promotion-id or --redis-url; with neither, the model directory alone)."""
    targets = service.items[:3]
    put_promotion(service, "trio", items=targets)
    redis = ["--redis-url", redis_url]
    before = cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "trio", "--size", "40", *redis)

    def deactivate(item: str) -> None:
        answer = service.client.patch(f"/v1/items/{item}", json={"active": False}, headers=service.headers("admin"))
        assert answer.status_code == 200, answer.get_data(as_text=True)

    deactivate(targets[0])
    after = cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "trio", "--size", "40", *redis)
    assert after == api_audience(service, {"promotion_id": "trio", "size": 40})
    assert after and after != before
    due = cli_audience(sample_model, tmp_path / "a.csv", "--promotion-id", "trio", "--due-for-reorder", "--size", "40",
                       *redis)
    assert due == api_audience(service, {"promotion_id": "trio", "due_for_reorder": True, "size": 40})
    # items named on the command line: Redis's deactivations apply once --redis-url names it, as in the API
    by_items = cli_audience(sample_model, tmp_path / "a.csv", "--items", *targets, "--size", "40", *redis)
    assert by_items == api_audience(service, {"items": targets, "size": 40}) == after
    model_only = cli_audience(sample_model, tmp_path / "a.csv", "--items", *targets, "--size", "40")
    assert model_only == before != after
    for item in targets[1:]:
        deactivate(item)
    answer = service.client.post("/v1/audiences", json={"promotion_id": "trio", "size": 40},
                                 headers=service.headers("marketing"))
    assert "no active target item" in assert_error(answer, 400, "invalid_input")["message"]
    assert main(["audience", "--model", str(sample_model), "--promotion-id", "trio", "--size", "40", *redis,
                 "--output", str(tmp_path / "a.csv")]) == 2
    assert "no active target item" in capsys.readouterr().err


def test_eligibility_and_promotion_errors(sample_model: Path, tmp_path: Path, redis_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.csv"
    (tmp_path / "bad.json").write_text("{min_orders: 2}")
    cases = [
        (["--items", "x", "--eligibility", '{"min_orders": 2'], "not valid JSON"),
        (["--items", "x", "--eligibility", '{"min_order": 2}'], "unknown key 'min_order' (did you mean 'min_orders'?)"),
        (["--items", "x", "--eligibility", '{"min_orders": -1}'], "min_orders: an integer >= 0, got -1"),
        (["--items", "x", "--eligibility", '{"min_spend": "a lot"}'], "min_spend"),
        (["--items", "x", "--eligibility", '{"journey_stages": ["vip"]}'], "unknown stage \"vip\""),
        (["--items", "x", "--eligibility", '{"countries": []}'], "countries"),
        (["--items", "x", "--eligibility", "[1]"], "JSON object"),
        (["--items", "x", "--eligibility", f"@{tmp_path / 'bad.json'}"], "not valid JSON"),
        (["--items", "x", "--eligibility", f"@{tmp_path / 'missing.json'}"], "cannot read"),
        (["--promotion-id", "nope", "--redis-url", redis_url], "--promotion-id nope: no such promotion"),
        (["--items", "x", "--redis-url", "redis://127.0.0.1:1/0"], "cannot reach Redis at redis://127.0.0.1:1/0"),
        (["--promotion-id", "p", "--items", "x"], "--items and --promotion-id"),
        (["--promotion-id", "p", "--lookalike", "c", "--redis-url", redis_url], "--promotion-id and --lookalike"),
    ]
    for args, message in cases:
        assert main(["audience", "--model", str(sample_model), *args, "--size", "5", "--output", str(out)]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("tailor: error: ") and err.count("\n") == 1 and message in err, (args, err)
