"""Segment columns (`--segment-col`): from the log to the popular lists, the artifact, Redis and the profile."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis
from flask import Flask

from redis_state import keys
from redis_state.codec import CustomerRecord, pack_customer, unpack_customer
from scoring.artifact import read_artifact
from tailor.cli import main
from tests.service_helpers import ApiClient, Models
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]

AGES = ("<25", "25-29")


def segmented_log(path: Path) -> Path:
    """30 customers per age group (ids with leading zeros), day-level m/d/Y dates as in Ta Feng.

    The young buy Y1..Y3 most, the others O1..O3; everybody also buys a shared item S now and then.
    """
    rng = np.random.default_rng(11)
    lines = ['"TRANSACTION_DT","CUSTOMER_ID","AGE_GROUP","PIN_CODE","PRODUCT_ID","AMOUNT"']
    for c in range(60):
        age = AGES[c % 2]
        area = "115" if c < 40 else "Others"
        prefix = "Y" if age == "<25" else "O"
        for day in range(1, 4):
            for item in rng.choice([f"{prefix}1", f"{prefix}2", f"{prefix}3", "S"], 2, replace=False,
                                   p=[0.35, 0.3, 0.25, 0.1]):
                lines.append(f'"1/{day + 10 * (c % 2)}/2001","{c:08d}","{age}","{area}","{item}","1"')
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode())
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("segments")
    data = segmented_log(root / "log.csv")
    out = root / "model"
    assert main(["--quiet", "train", "--data", str(data), "--customer-col", "CUSTOMER_ID", "--item-col",
                 "PRODUCT_ID", "--time-col", "TRANSACTION_DT", "--quantity-col", "AMOUNT",
                 "--segment-col", "AGE_GROUP", "--segment-col", "PIN_CODE", "--algorithm", "popular",
                 "--no-eval", "--out", str(out)]) == 0
    return out


def test_segments_reach_the_artifact(model_dir: Path) -> None:
    a = read_artifact(model_dir, verify=True)
    assert a.customer_ids[0] == "00000000" and len(a.customer_ids) == 60  # ids as written
    c = a.customers
    assert list(c.segments) == ["AGE_GROUP", "PIN_CODE"]
    assert sorted(c.segments["AGE_GROUP"]) == sorted(AGES) and sorted(c.segments["PIN_CODE"]) == ["115", "Others"]
    assert c.segment.shape == (60, 2)
    row = list(a.customer_ids).index("00000001")
    assert c.segments["AGE_GROUP"][c.segment[row, 0]] == "25-29"
    assert c.segments["PIN_CODE"][c.segment[row, 1]] == "115"
    by_age = a.popular["by_segment"]["AGE_GROUP"]
    young = {a.item_ids[i] for i in by_age["<25"]["items"][:3]}
    old = {a.item_ids[i] for i in by_age["25-29"]["items"][:3]}
    assert young == {"Y1", "Y2", "Y3"} and old == {"O1", "O2", "O3"}
    assert set(a.popular["by_segment"]["PIN_CODE"]) == {"115", "Others"}  # 40 and 20 customers: both >= 10
    assert a.popular["by_country"] == {} and a.manifest["counts"]["customers"] == 60
    # a customer's basket is a day: 3 days each
    assert set(c.orders.tolist()) == {3}


def test_artifacts_without_segments_stay_readable(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    (old / "segments.json").unlink()
    with np.load(old / "customers.npz") as arrays:
        kept = {name: arrays[name] for name in arrays.files if name != "segments"}
    np.savez(old / "customers.npz", **kept)
    a = read_artifact(old)
    assert a.customers.segments == {} and a.customers.segment.shape == (60, 0)


def test_customer_record_formats() -> None:
    plain = CustomerRecord(np.asarray([1, 5]), np.ones(2), np.ones(2), np.zeros(2), 10.0, 1.0, 2.0, 3, 4)
    blob = pack_customer(plain)
    assert blob[:4] == b"TLC1" and unpack_customer(blob).segments == ()
    segmented = CustomerRecord(plain.items, plain.orders, plain.quantity, plain.last_day, 10.0, 1.0, 2.0, 3, 4,
                               segments=(2, -1))
    blob2 = pack_customer(segmented)
    assert blob2[:4] == b"TLC2" and len(blob2) == len(blob) + 4 + 8
    back = unpack_customer(blob2)
    assert back.segments == (2, -1) and back.items.tolist() == [1, 5] and back.country == 4
    assert back.order_count == 3 and back.spend == 10.0


def test_profile_and_popular_by_segment(model_dir: Path, redis_client: redis.Redis,
                                        make_app: Callable[..., Flask]) -> None:
    version = publish_model(redis_client, model_dir)
    assert json.loads(redis_client.get(keys.model_blob(version, "segments.json")))["AGE_GROUP"]
    api = ApiClient(make_app())
    body = api.get("/v1/customers/00000001/profile").get_json()
    assert body["segments"] == {"AGE_GROUP": "25-29", "PIN_CODE": "115"}
    assert body["orders"] == 3 and body["country"] is None
    assert api.get("/v1/customers/unknown/profile").get_json()["segments"] == {"AGE_GROUP": None,
                                                                              "PIN_CODE": None}
    young = api.get("/v1/popular?n=3&segment=AGE_GROUP:%3C25").get_json()
    assert young["segment"] == "AGE_GROUP:<25"
    assert {i["item_id"] for i in young["items"]} == {"Y1", "Y2", "Y3"}
    assert young["items"][0]["reason"] == "popular with AGE_GROUP <25"
    area = api.get("/v1/popular?n=3&segment=PIN_CODE:Others").get_json()
    assert area["segment"] == "PIN_CODE:Others"
    for query in ("segment=AGE_GROUP:99", "segment=NOPE:1", "segment=country:France"):
        assert api.get(f"/v1/popular?n=3&{query}").get_json()["segment"] == "global"
    assert api.get("/v1/popular?n=3&segment=x").status_code == 400  # shorter than NAME:VALUE


def test_models_without_segments_keep_their_profile_and_country(models: Models, redis_client: redis.Redis,
                                                                 make_app: Callable[..., Flask]) -> None:
    publish_model(redis_client, models.retail.path)
    api = ApiClient(make_app())
    customer = models.retail.busiest_customer()
    body = api.get(f"/v1/customers/{customer}/profile").get_json()
    assert body["segments"] == {} and body["country"] == "United Kingdom"
    history = redis_client.get(keys.customer_history(models.retail.version, customer))
    assert history[:4] == b"TLC3"  # without segments: the TLC1 layout, then the first purchase day per item
    uk = api.get("/v1/popular?n=3&segment=country:United%20Kingdom").get_json()
    assert uk["segment"] == "country:United Kingdom"
    assert uk["items"] == api.get("/v1/popular?n=3&country=United%20Kingdom").get_json()["items"]
