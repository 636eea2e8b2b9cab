"""Repeat-purchase reasons ("you buy this about every 10 days") date the period from the customer's first
purchase of the item, (latest - first of the item) / (orders - 1), on every path: the model API (explain,
explain_many, explain_row, score_items), the request path's row (record + live purchases) and the HTTP API.
Models and records from before the first day per item was kept answer exactly as those versions did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis
from flask import Flask

from redis_state import keys
from redis_state.codec import CustomerRecord
from scoring.artifact import read_artifact
from scoring.history import CustomerRow, PurchaseHistory
from scoring.models import Reason, Recommender
from scoring.models.buy_again import repeat_reasons_row
from service.domain.customer import CustomerState, LivePurchase, purchase_history
from tailor.cli import main
from tests.data_helpers import without_first_days, write
from tests.service_helpers import ApiClient, event
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]

# "tea" bought jam (Y) once on day 0 (2024-01-01) and tea (X) on days 300, 310 and 320: every 10 days. Dated
# from the oldest latest purchase over all their items (day 0), as before, the period was (320 - 0) / 2 = 160.
LOG = """customer_id,item_id,timestamp,quantity,price,title
tea,Y,2024-01-01,1,2.0,Jam
tea,X,2024-10-27,1,3.0,Tea
tea,X,2024-11-06,1,3.0,Tea
tea,X,2024-11-16,1,3.0,Tea
other,X,2024-06-01,1,3.0,Tea
other,Z,2024-06-01,1,4.0,Honey
other,Y,2024-12-31,1,2.0,Jam
"""
ALGORITHMS = ("hybrid", "buy-again", "item-knn")
# Live purchases after the data's end (2024-12-31 = day 365): tea again on day 370, honey (new) on 370 and 390.
LIVE = [event("t1", "tea", item_id="X", timestamp="2025-01-05T00:00:00Z"),
        event("z1", "tea", item_id="Z", timestamp="2025-01-05T00:00:00Z"),
        event("z2", "tea", item_id="Z", timestamp="2025-01-25T00:00:00Z")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repeat-period")
    data = write(root, LOG)
    out = {}
    for algorithm in ALGORITHMS:
        out[algorithm] = root / algorithm
        assert main(["-q", "train", "--data", str(data), "--no-eval", "--algorithm", algorithm,
                     "--out", str(out[algorithm])]) == 0
    return out


@pytest.fixture(scope="module")
def old_model_dir(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hybrid as the code before first purchase days per item wrote it: no ``first_day`` in history.npz."""
    return without_first_days(model_dirs["hybrid"], tmp_path_factory.mktemp("repeat-period-old") / "model")


def periods_of_every_path(model: Recommender, history: PurchaseHistory, row: int, items: np.ndarray) -> list:
    """The repeat periods of ``items`` (None where no repeat reason), the same through every model path."""
    single = [model.explain(history, row, int(item)) for item in items]
    many = model.explain_many(history, row, items)
    customer = CustomerRow.of(history, row)
    assert single == many == model.explain_row(customer, items) == model.score_items(customer, items).reasons
    return [r.period_days if r is not None and r.kind == "repeat-purchase" else None for r in many]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_period_is_dated_from_the_items_first_purchase_in_the_model_api(
        model_dirs: dict[str, Path], algorithm: str) -> None:
    a = read_artifact(model_dirs[algorithm])
    row = list(a.customer_ids).index("tea")
    x, y, z = (list(a.item_ids).index(i) for i in "XYZ")
    items = np.asarray([x, y, z], dtype=np.int64)
    assert a.history.first_day is not None
    assert periods_of_every_path(a.model, a.history, row, items)[:2] == [10.0, None]  # (320 - 300) / 2; Y: once
    assert a.model.explain(a.history, row, x) == Reason("repeat-purchase", related_item=x, period_days=10.0)
    # Without the first days (an artifact from before): exactly the old estimate, (320 - 0) / 2.
    old = replace(a.history, first_day=None)
    assert periods_of_every_path(a.model, old, row, items)[:2] == [160.0, None]


def test_an_old_artifact_gives_the_old_reason(old_model_dir: Path) -> None:
    a = read_artifact(old_model_dir)
    assert a.history.first_day is None
    row, x = list(a.customer_ids).index("tea"), list(a.item_ids).index("X")
    assert periods_of_every_path(a.model, a.history, row, np.asarray([x]))[0] == 160.0


# -- the request path's row: record + live purchases -----------------------------------------------------
def record(first_days: list[float] | None) -> CustomerRecord:
    """Items 0 (bought once on day 0) and 1 (three orders, latest day 320) of a customer since day 0."""
    return CustomerRecord(np.asarray([0, 1], dtype=np.int32), np.asarray([1.0, 3.0], dtype=np.float32),
                          np.asarray([1.0, 3.0], dtype=np.float32), np.asarray([0.0, 320.0]), 9.0, 0.0, 320.0, 4, 0,
                          item_first_day=None if first_days is None else np.asarray(first_days))


INDEX = {"A": 0, "B": 1, "C": 2}


def reasons(row: CustomerRow) -> list[float | None]:
    """The repeat periods of items 0, 1, 2 (None: no period or not bought)."""
    return [r.period_days if r is not None else None for r in repeat_reasons_row(row, np.arange(3))]


def test_live_purchases_carry_first_days_into_the_row() -> None:
    dated = CustomerState("c", record([0.0, 300.0]))
    row = purchase_history(dated, INDEX, 3, 365.0, 365.0)
    assert row.first_day is not None and row.first_day.tolist() == [0.0, 300.0]
    assert reasons(row) == [None, 10.0, None]
    # B again (known: keeps the record's first day), C twice (new: its first day is its first live purchase).
    live = [LivePurchase("B", 370.0, 1.0, None), LivePurchase("C", 390.0, 1.0, None),
            LivePurchase("C", 370.0, 1.0, None), LivePurchase("A", 100.0, 1.0, None)]  # A: in the record already
    row = purchase_history(replace(dated, live=live), INDEX, 3, 365.0, 390.0)
    assert row.items.tolist() == [0, 1, 2] and row.orders.tolist() == [1.0, 4.0, 2.0]
    assert row.first_day is not None and row.first_day.tolist() == [0.0, 300.0, 370.0]
    assert reasons(row) == [None, round(70 / 3, 1), 20.0]
    # A customer the model does not know: live purchases (and viewed items) start their own first days.
    stranger = purchase_history(CustomerState("s", None, live[1:3]), INDEX, 3, 365.0, 390.0, include_session=True)
    assert stranger.first_day is not None and stranger.first_day.tolist() == [370.0]
    assert reasons(stranger) == [None, None, 20.0]


def test_records_without_first_days_keep_the_old_estimate() -> None:
    """A TLC1 / TLC2 record (published before) gives the row no first days, with or without live purchases: the
    period is dated from the oldest latest purchase over all items, exactly as before."""
    old = CustomerState("c", record(None))
    row = purchase_history(old, INDEX, 3, 365.0, 365.0)
    assert row.first_day is None and reasons(row) == [None, 160.0, None]
    live = [LivePurchase("B", 370.0, 1.0, None), LivePurchase("C", 390.0, 1.0, None),
            LivePurchase("C", 370.0, 1.0, None)]
    row = purchase_history(replace(old, live=live), INDEX, 3, 365.0, 390.0)
    assert row.first_day is None and reasons(row) == [None, round(370 / 3, 1), 390.0]


# -- the HTTP API on a private Redis ---------------------------------------------------------------------
def reason_texts(api: ApiClient) -> tuple[dict[str, str], dict[str, str]]:
    """Item -> reason of the customer's recommendations and of a re-ranked page."""
    recommended = api.get("/v1/customers/tea/recommendations?n=10")
    ranked = api.post("/v1/customers/tea/rank", json={"items": ["X", "Y", "Z"]})
    assert recommended.status_code == ranked.status_code == 200, recommended.get_data(as_text=True)
    return ({i["item_id"]: i["reason"] for i in recommended.get_json()["items"]},
            {i["item_id"]: i["reason"] for i in ranked.get_json()["items"]})


def assert_reasons(api: ApiClient, expected: dict[str, str]) -> None:
    for texts in reason_texts(api):
        assert {item: texts[item] for item in expected} == expected


@pytest.mark.parametrize("algorithm", ["hybrid", "buy-again"])
def test_the_api_says_about_every_10_days_and_live_purchases_move_it(
        model_dirs: dict[str, Path], algorithm: str, redis_client: redis.Redis,
        make_app: Callable[..., Flask]) -> None:
    version = publish_model(redis_client, model_dirs[algorithm])
    assert redis_client.get(keys.customer_history(version, "tea"))[:4] == b"TLC3"
    api = ApiClient(make_app())
    assert_reasons(api, {"X": "you buy this about every 10 days", "Y": "you bought this before"})
    assert api.post("/v1/events", json=LIVE).status_code == 200
    # Tea: (370 - 300) / 3 = 23.3 days; honey, new: (390 - 370) / 1 = 20 days.
    assert_reasons(api, {"X": "you buy this about every 23 days", "Z": "you buy this about every 20 days"})


def test_a_version_published_before_answers_as_before(
        old_model_dir: Path, redis_client: redis.Redis, make_app: Callable[..., Flask]) -> None:
    version = publish_model(redis_client, old_model_dir)
    assert redis_client.get(keys.customer_history(version, "tea"))[:4] == b"TLC1"
    api = ApiClient(make_app())
    assert_reasons(api, {"X": "you buy this about every 160 days", "Y": "you bought this before"})
    assert api.post("/v1/events", json=LIVE).status_code == 200
    # The old estimate: from day 0, the oldest latest purchase: 370 / 3 = 123.3; honey 390 / 1.
    assert_reasons(api, {"X": "you buy this about every 123 days", "Z": "you buy this about every 390 days"})
