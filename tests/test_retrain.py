"""`tailor retrain`: the quality gate against the active model on the same holdout, and its history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from redis_state import keys
from tailor.cli import EXIT_REJECTED, main
from tests.conftest import SAMPLE_CSV
from tests.service_helpers import ApiClient
from training.retrain import gate

pytest_plugins = ["tests.service_helpers"]


def _retrain(redis_url: str, out: Path, *extra: str) -> int:
    return main(["--quiet", "retrain", "--data", str(SAMPLE_CSV), "--format", "online-retail",
                 "--redis-url", redis_url, "--out", str(out), *extra])


def test_gate_is_relative_to_the_active_model() -> None:
    active = {"ndcg": {"overall": 0.40, "discovery": 0.10}}
    assert gate({"ndcg": {"overall": 0.395, "discovery": 0.099}}, active, 0.02)[0]
    passes, reason = gate({"ndcg": {"overall": 0.40, "discovery": 0.09}}, active, 0.02)
    assert not passes and "discovery" in reason
    assert gate({"ndcg": {"overall": 0.0, "discovery": 0.0}}, None, 0.02) == (True, "no active model")


def test_worse_candidate_is_rejected_unless_forced(redis_url: str, redis_client: redis.Redis, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], make_app) -> None:
    assert _retrain(redis_url, tmp_path) == 0
    good = redis_client.get(keys.ACTIVE_MODEL)
    assert _retrain(redis_url, tmp_path, "--algorithm", "popular") == EXIT_REJECTED
    assert redis_client.get(keys.ACTIVE_MODEL) == good
    assert "kept the active model" in capsys.readouterr().out
    history = [json.loads(x) for x in redis_client.lrange(keys.MODEL_HISTORY, 0, -1)]
    assert history[0]["action"] == "retrain-rejected" and history[0]["published"] is False
    assert history[0]["candidate"]["ndcg"]["overall"] < history[0]["active"]["ndcg"]["overall"]
    shown = ApiClient(make_app()).get("/v1/models").get_json()["history"]
    assert shown[0]["action"] == "retrain-rejected"
    assert "below the active model's" in shown[0]["reason"]
    assert _retrain(redis_url, tmp_path, "--algorithm", "popular", "--force") == 0
    assert redis_client.get(keys.ACTIVE_MODEL) != good
    latest = json.loads(redis_client.lindex(keys.MODEL_HISTORY, 0))
    assert latest["action"] == "retrain-published" and latest["forced"] is True
