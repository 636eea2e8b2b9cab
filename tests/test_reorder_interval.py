"""Due for re-order: the interval of an item is dated from the customer's first purchase of that item, carried
from the purchase log through the artifact and the published records to ``POST /v1/audiences`` and
``tailor audience``; records and artifacts written before it was kept still serve, with the old estimate."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis
from flask import Flask

from redis_state import keys
from redis_state.codec import CustomerRecord, pack_customer, unpack_customer
from scoring.artifact import read_artifact
from scoring.history import to_day
from tailor.cli import main
from tests.data_helpers import without_first_days, write
from tests.service_helpers import KEYS
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]

# "late" has bought since 2024-01-01 but took up tea (X) only on 2024-10-27, then every 10 days; the data end
# ("now") is 2024-12-31, 35 days after the last tea: 25 days overdue. Dated from the customer's first order,
# the interval would be 330 / 3 = 110 days and "late" would not be due. "steady" bought tea from the first
# order on, every 30 days: the same interval either way (60 days since, 30 overdue).
LOG = """customer_id,item_id,timestamp,quantity,price,title
late,Y,2024-01-01,1,2.0,Jam
late,Z,2024-03-01,1,4.0,Honey
late,X,2024-10-27,1,3.0,Tea
late,X,2024-11-06,1,3.0,Tea
late,X,2024-11-16,1,3.0,Tea
late,X,2024-11-26,1,3.0,Tea
steady,X,2024-09-02,1,3.0,Tea
steady,X,2024-10-02,1,3.0,Tea
steady,X,2024-11-01,1,3.0,Tea
other,Y,2024-12-31,1,2.0,Jam
"""
LATE = ("late", 1 / (1 + 25 / 10) * 4, "due to re-order Tea (X): 25 days overdue (re-orders about every 10 days)")
STEADY = ("steady", 3 / (1 + 30 / 30), "due to re-order Tea (X): 30 days overdue (re-orders about every 30 days)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reorder")
    out = root / "model"
    assert main(["-q", "train", "--data", str(write(root, LOG)), "--no-eval", "--algorithm", "buy-again",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def old_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model as the previous code wrote it: no first purchase day per item in history.npz."""
    return without_first_days(model_dir, tmp_path_factory.mktemp("reorder-old") / "model")


def api_due(make_app: Callable[..., Flask], body: dict) -> list[tuple[str, float, str]]:
    app = make_app()
    app.extensions["tailor"].store.start()
    answer = app.test_client().post("/v1/audiences", json={"due_for_reorder": True, "size": 10, **body},
                                    headers={"Authorization": f"Bearer {KEYS['marketing']}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [(c["customer_id"], c["score"], c["reason"]) for c in answer.get_json()["customers"]]


def cli_due(model: Path, out: Path, *args: str) -> list[tuple[str, float, str]]:
    assert main(["-q", "audience", "--model", str(model), "--due-for-reorder", "--size", "10", *args,
                 "--output", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "customer_id,score,reason"
    rows = [line.split(",", 2) for line in lines[1:]]
    return [(c, float(s), r) for c, s, r in rows]


def rounded(rows: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
    return [(c, round(s, 6), r) for c, s, r in rows]


def test_the_artifact_keeps_each_items_first_purchase_day(model_dir: Path) -> None:
    a = read_artifact(model_dir)
    row, col = list(a.customer_ids).index("late"), list(a.item_ids).index("X")
    assert a.history.first_day is not None
    day = to_day(np.asarray(["2024-10-27", "2024-11-26", "2024-01-01"], dtype="datetime64[s]"))
    assert a.history.first_day[row, col] == day[0] and a.history.last_day[row, col] == day[1]
    assert a.customers.first_day[row] == day[2]  # the customer's first order, which the old estimate used
    assert np.array_equal(a.history.first_day.indices, a.history.orders.indices)  # one sparsity structure


def test_late_taker_is_due_on_their_own_rhythm_in_the_api_and_the_cli(
        model_dir: Path, redis_client: redis.Redis, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    version = publish_model(redis_client, model_dir)
    assert redis_client.get(keys.customer_history(version, "late"))[:4] == b"TLC3"
    expected = rounded([STEADY, LATE])
    for body, args in (({}, ()), ({"items": ["X"]}, ("--items", "X"))):
        assert api_due(make_app, body) == expected, body
        assert cli_due(model_dir, tmp_path / "a.csv", *args) == expected, args
    assert api_due(make_app, {"items": ["Y"]}) == []  # bought once by each: no interval to be due by


def test_models_written_and_published_before_use_the_old_estimate(
        old_model_dir: Path, redis_client: redis.Redis, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Without first purchase days per item (an artifact or a version from before), the interval is dated from
    the customer's first order, as it was: "late" is not due; the API and the CLI still agree."""
    assert read_artifact(old_model_dir).history.first_day is None
    version = publish_model(redis_client, old_model_dir)
    blob = redis_client.get(keys.customer_history(version, "late"))
    assert blob[:4] == b"TLC1" and unpack_customer(blob, first_days=True).item_first_day is None
    expected = rounded([STEADY])
    assert api_due(make_app, {}) == expected
    assert cli_due(old_model_dir, tmp_path / "a.csv") == expected


# -- the record format ------------------------------------------------------------------------------------
def tlc1(items: list[int], orders: list[float], quantity: list[float], last: list[float]) -> bytes:
    """A record exactly as the code before first purchase days per item packed it."""
    n = len(items)
    return (struct.pack("<4sIdddii", b"TLC1", n, 12.5, 100.0, 300.0, 7, 2) + struct.pack(f"<{n}i", *items)
            + struct.pack(f"<{n}f", *orders) + struct.pack(f"<{n}f", *quantity) + struct.pack(f"<{n}d", *last))


def test_records_with_first_days_round_trip_and_old_records_still_read() -> None:
    old = tlc1([3, 9], [2.0, 1.0], [5.0, 1.0], [250.0, 300.0])
    for first_days in (False, True):
        r = unpack_customer(old, first_days=first_days)
        assert r.items.tolist() == [3, 9] and r.last_day.tolist() == [250.0, 300.0] and r.order_count == 7
        assert r.first_day == 100.0 and r.item_first_day is None
    plain = CustomerRecord(np.asarray([3, 9]), np.asarray([2.0, 1.0]), np.asarray([5.0, 1.0]),
                           np.asarray([250.0, 300.0]), 12.5, 100.0, 300.0, 7, 2)
    assert pack_customer(plain) == old  # a model without first days publishes what it always did

    dated = CustomerRecord(plain.items, plain.orders, plain.quantity, plain.last_day, 12.5, 100.0, 300.0, 7, 2,
                           item_first_day=np.asarray([150.25, 300.0]))
    blob = pack_customer(dated)
    assert blob[:4] == b"TLC3" and len(blob) == len(old) + 8 * 2 and blob[4:len(old)] == old[4:]  # same offsets
    back = unpack_customer(blob, first_days=True)
    assert back.item_first_day is not None and back.item_first_day.tolist() == [150.25, 300.0]
    assert back.items.tolist() == [3, 9] and back.last_day.tolist() == [250.0, 300.0]
    assert unpack_customer(blob).item_first_day is None  # left unread unless asked for
    with pytest.raises(ValueError):
        unpack_customer(blob[:-1], first_days=True)

    segmented = CustomerRecord(*[getattr(dated, f) for f in ("items", "orders", "quantity", "last_day")], 12.5,
                               100.0, 300.0, 7, 2, segments=(1, -1), item_first_day=dated.item_first_day)
    blob4 = pack_customer(segmented)
    without = pack_customer(CustomerRecord(*[getattr(segmented, f) for f in ("items", "orders", "quantity",
                                                                             "last_day")],
                                           12.5, 100.0, 300.0, 7, 2, segments=(1, -1)))
    assert blob4[:4] == b"TLC4" and without[:4] == b"TLC2" and blob4[4:len(without)] == without[4:]
    back4 = unpack_customer(blob4, first_days=True)
    assert back4.segments == (1, -1) and back4.item_first_day is not None
    assert back4.item_first_day.tolist() == [150.25, 300.0]
    with pytest.raises(ValueError, match="first purchase days"):
        pack_customer(CustomerRecord(plain.items, plain.orders, plain.quantity, plain.last_day, 12.5, 100.0,
                                     300.0, 7, 2, item_first_day=np.asarray([1.0])))
