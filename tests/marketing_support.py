"""Fixtures of the promotions and messages API tests: a model trained on the shipped sample, published to
the test's private Redis, and the real app behind Flask's test client.

Test modules load it with ``pytest_plugins = ["tests.marketing_support"]`` (and import it only for type
checking, so that pytest can rewrite its asserts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

SAMPLE_CSV = Path(__file__).resolve().parent.parent / "data" / "sample" / "online_retail_sample.csv"
KEYS = {"read": "k-read", "marketing": "k-marketing", "admin": "k-admin"}


def auth(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[scope]}"}


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tailor train`` on the shipped sample, once per session."""
    from tailor.cli import main

    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["-q", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                 "--out", str(out)]) == 0
    return out


@dataclass
class Service:
    app: Flask
    client: FlaskClient
    redis: redis.Redis
    customers: list[str]
    items: list[str]

    @staticmethod
    def headers(scope: str) -> dict[str, str]:
        return auth(scope)

    def get(self, url: str, scope: str = "read", **kw: Any) -> Any:
        return self.client.get(url, headers=auth(scope), **kw)

    def put(self, url: str, body: Any, scope: str = "marketing", **kw: Any) -> Any:
        return self.client.put(url, json=body, headers=auth(scope), **kw)

    def delete(self, url: str, scope: str = "marketing") -> Any:
        return self.client.delete(url, headers=auth(scope))

    def events(self, events: list[dict[str, Any]]) -> Any:
        return self.client.post("/v1/events", json={"events": events}, headers=auth("read"))


@pytest.fixture
def service(redis_url: str, redis_client: redis.Redis, sample_model: Path) -> Iterator[Service]:
    """The sample model published and active in the private Redis, and the app serving it."""
    from service import create_app
    from training.publish import publish_model

    publish_model(redis_client, sample_model)
    app = create_app({"REDIS_URL": redis_url, "TAILOR_API_KEYS": ",".join(f"{k}:{s}" for s, k in KEYS.items()),
                      "TAILOR_REDIS_TIMEOUT_MS": 2000, "TAILOR_REDIS_WRITE_TIMEOUT_MS": 5000})
    app.extensions["tailor"].store.start()  # load the model now, not in the first (concurrent) requests
    customers = [str(c) for c in np.load(sample_model / "customer_ids.npy")]
    items = [str(i) for i in np.load(sample_model / "item_ids.npy")]
    yield Service(app, app.test_client(), redis_client, customers, items)
    app.extensions["tailor"].close()
