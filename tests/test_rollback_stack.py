"""Rollback walks the activation history as a stack (issue 12.6): the CLI and the API agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask

from redis_state import keys, versions
from tailor.cli import main
from tests.conftest import SAMPLE_CSV
from tests.service_helpers import KEYS, ApiClient
from training import publish

pytest_plugins = ["tests.service_helpers"]


@pytest.fixture(scope="module")
def three_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("stack")
    dirs = []
    for algorithm in ("popular", "item-knn", "buy-again"):
        out = root / algorithm
        assert main(["--quiet", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                     "--algorithm", algorithm, "--out", str(out)]) == 0
        dirs.append(out)
    return dirs


def _active(client: redis.Redis) -> str:
    return client.get(keys.ACTIVE_MODEL).decode()


def test_rollback_pops_the_activation_stack(redis_client: redis.Redis, three_dirs: list[Path]) -> None:
    a, b, c = (publish.publish_model(redis_client, d, keep=10) for d in three_dirs)
    assert _active(redis_client) == c
    assert versions.rollback(redis_client) == b
    assert versions.rollback(redis_client) == a
    with pytest.raises(versions.PublishError, match="no earlier version"):
        versions.rollback(redis_client)
    assert _active(redis_client) == a


def test_reactivating_the_active_version_adds_nothing(redis_client: redis.Redis, three_dirs: list[Path]) -> None:
    a, b, c = (publish.publish_model(redis_client, d, keep=10, activate=False) for d in three_dirs)
    for version in (a, b, b, c, c):
        versions.activate_version(redis_client, version)
    assert versions.rollback(redis_client) == b
    assert versions.rollback(redis_client) == a
    with pytest.raises(versions.PublishError):
        versions.rollback(redis_client)


def test_rollback_skips_deleted_versions(redis_client: redis.Redis, three_dirs: list[Path]) -> None:
    a, b, c = (publish.publish_model(redis_client, d, keep=10) for d in three_dirs)
    versions.delete_version(redis_client, b)
    assert versions.rollback(redis_client) == a
    versions.activate_version(redis_client, c)
    assert versions.rollback(redis_client) == a


def test_cli_and_api_walk_the_same_stack(redis_client: redis.Redis, redis_url: str, three_dirs: list[Path],
                                         make_app: Callable[..., Flask], capsys: pytest.CaptureFixture) -> None:
    a, b, _c = (publish.publish_model(redis_client, d, keep=10) for d in three_dirs)
    admin = ApiClient(make_app(), key=KEYS["admin"])
    assert admin.post("/v1/models/rollback").get_json()["version"] == b
    assert main(["models", "--redis-url", redis_url, "rollback"]) == 0
    assert f"rolled back to {a}" in capsys.readouterr().out
    assert _active(redis_client) == a
    assert admin.post("/v1/models/rollback").status_code == 409
