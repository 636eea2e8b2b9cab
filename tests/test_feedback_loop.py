"""The feedback loop: purchases posted to the API are read back by `tailor train --events-from`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tailor.cli import main
from tests.conftest import SAMPLE_CSV
from tests.service_helpers import ApiClient, TrainedModel, event

pytest_plugins = ["tests.service_helpers"]


def test_purchase_events_become_training_rows(api: ApiClient, retail: TrainedModel, redis_url: str,
                                              tmp_path: Path) -> None:
    customer = retail.busiest_customer()
    new_item = next(i for i in retail.popular_items() if i not in retail.customer_items(customer))
    events = [
        event("loop-1", customer, "purchase", new_item, quantity=3, price=2.5),
        event("loop-1", customer, "purchase", new_item, quantity=3, price=2.5),  # a retry: counted once
        event("loop-2", "brand-new-customer", "purchase", new_item),
        event("loop-3", customer, "view", new_item),  # not a purchase: not a training row
    ]
    assert api.post("/v1/events", json={"events": events}).status_code == 200

    out = tmp_path / "model"
    assert main(["--quiet", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                 "--algorithm", "popular", "--events-from", redis_url, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["quality"]["events_from_stream"] == 2
    assert manifest["counts"]["customers"] == 301  # the sample's 300 plus the new customer
    assert manifest["data"]["last_timestamp"].startswith("2011-12-10")


def test_unreachable_events_redis_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                 "--events-from", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "m")]) == 2
    assert "--events-from" in capsys.readouterr().err
