"""Rollback walks the activation history as a stack (issue 12.6): the CLI and the API agree."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def test_concurrent_rollbacks_return_to_different_versions(redis_client: redis.Redis, three_dirs: list[Path],
                                                           redis_url: str) -> None:
    """Two rollbacks at the same moment (two admins, or the CLI and the console) walk the stack one after the
    other: one returns to B, the other to A, never both to B."""
    a, b, _c = (publish.publish_model(redis_client, d, keep=10) for d in three_dirs)
    start = threading.Barrier(2)

    def roll() -> str:
        client = versions.connect(redis_url)  # one connection each, as two processes would have
        start.wait()
        return versions.rollback(client)

    with ThreadPoolExecutor(2) as pool:
        returned = sorted(pool.map(lambda _: roll(), range(2)))
    assert returned == sorted([a, b])
    assert _active(redis_client) == a


def test_a_change_waits_for_the_one_in_progress(redis_client: redis.Redis, three_dirs: list[Path],
                                                redis_url: str) -> None:
    """While another process holds the model-change lock, an activation waits, then runs on the state it
    finds; one that cannot get the lock in time fails without changing anything."""
    a, b, _c = (publish.publish_model(redis_client, d, keep=10, activate=False) for d in three_dirs)
    versions.activate_version(redis_client, a)
    other = versions.connect(redis_url)
    with ThreadPoolExecutor(1) as pool, versions.model_changes(other):
        pending = pool.submit(versions.activate_version, redis_client, b)
        time.sleep(0.5)
        assert not pending.done() and _active(redis_client) == a
    pending.result(timeout=10)
    assert _active(redis_client) == b
    lock = other.lock(keys.MODEL_LOCK, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(versions, "LOCK_WAIT_S", 0.2)
            with pytest.raises(versions.PublishError, match="still running"):
                versions.rollback(redis_client)
        assert _active(redis_client) == b
    finally:
        lock.release()


def test_delete_never_removes_a_version_activated_meanwhile(redis_client: redis.Redis, three_dirs: list[Path],
                                                            redis_url: str) -> None:
    """Deleting V while another process activates V: whichever goes first, V is either deleted and not
    active, or active with all its keys; never the active pointer on a removed version."""
    a, b, _c = (publish.publish_model(redis_client, d, keep=10, activate=False) for d in three_dirs)
    versions.activate_version(redis_client, a)
    start = threading.Barrier(2)

    def attempt(action: Callable[[redis.Redis], None]) -> str | None:
        client = versions.connect(redis_url)
        start.wait()
        try:
            action(client)
        except versions.PublishError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(2) as pool:
        deleting = pool.submit(attempt, lambda client: versions.delete_version(client, b))
        activating = pool.submit(attempt, lambda client: versions.activate_version(client, b))
        errors = [deleting.result(timeout=30), activating.result(timeout=30)]
    assert sum(e is not None for e in errors) == 1, errors  # exactly one of the two lost the race
    if _active(redis_client) == b:
        assert redis_client.exists(keys.model_manifest(b)) and "is active" in errors[0]
        assert list(redis_client.scan_iter(match=f"tailor:hist:{b}:*", count=1000))
    else:
        assert _active(redis_client) == a and "not published" in errors[1]
        assert not list(redis_client.scan_iter(match=f"tailor:hist:{b}:*", count=1000))


def test_a_publish_that_fails_after_activating_keeps_the_active_version(
        redis_client: redis.Redis, three_dirs: list[Path]) -> None:
    """The history list is unwritable (a real WRONGTYPE error after the active pointer moved): the publish
    reports the failure but does not remove the version it just made active."""
    a = publish.publish_model(redis_client, three_dirs[0], keep=10)
    redis_client.delete(keys.MODEL_HISTORY)
    redis_client.set(keys.MODEL_HISTORY, "not a list")
    with pytest.raises(versions.PublishError, match="is published and active") as failed:
        publish.publish_model(redis_client, three_dirs[1], keep=10)
    b = _active(redis_client)
    assert b != a and b in str(failed.value)
    assert redis_client.exists(keys.model_manifest(b))
    assert list(redis_client.scan_iter(match=f"tailor:hist:{b}:*", count=1000)), "its customers were removed"
