"""Publishing to a real Redis: versioned upload, atomic activation, rollback, pruning, failed publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from redis_state import keys, versions
from redis_state.codec import unpack_customer
from tailor.cli import main
from tests.conftest import SAMPLE_CSV
from training import publish


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small versions (different algorithms) to switch between."""
    root = tmp_path_factory.mktemp("publish")
    dirs = []
    for algorithm in ("popular", "item-knn"):
        out = root / algorithm
        assert main(["--quiet", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                     "--algorithm", algorithm, "--out", str(out)]) == 0
        dirs.append(out)
    return dirs


def _version(model_dir: Path) -> str:
    return json.loads((model_dir / "manifest.json").read_text())["version"]


def test_publish_uploads_everything_then_activates(redis_client: redis.Redis, model_dirs: list[Path]) -> None:
    version = publish.publish_model(redis_client, model_dirs[0])
    assert version == _version(model_dirs[0])
    assert redis_client.get(keys.ACTIVE_MODEL).decode() == version
    manifest = json.loads(redis_client.get(keys.model_manifest(version)))
    assert manifest["counts"]["customers"] == 300
    histories = list(redis_client.scan_iter(match=keys.customer_history_pattern(version), count=1000))
    assert len(histories) == 300
    record = unpack_customer(redis_client.get(histories[0]))
    assert len(record.items) > 0 and record.order_count >= 1


def test_rollback_and_activate(redis_client: redis.Redis, model_dirs: list[Path]) -> None:
    first = publish.publish_model(redis_client, model_dirs[0])
    second = publish.publish_model(redis_client, model_dirs[1])
    assert redis_client.get(keys.ACTIVE_MODEL).decode() == second
    assert versions.rollback(redis_client) == first
    assert redis_client.get(keys.ACTIVE_MODEL).decode() == first
    versions.activate_version(redis_client, second)
    listed = versions.list_versions(redis_client)
    assert [v["version"] for v in listed if v["active"]] == [second]
    with pytest.raises(versions.PublishError, match="is active"):
        versions.delete_version(redis_client, second)
    versions.delete_version(redis_client, first)
    assert not list(redis_client.scan_iter(match=keys.customer_history_pattern(first)))
    with pytest.raises(versions.PublishError, match="already published"):
        publish.publish_model(redis_client, model_dirs[1])


def test_prune_keeps_newest_and_active(redis_client: redis.Redis, model_dirs: list[Path]) -> None:
    first = publish.publish_model(redis_client, model_dirs[0])
    publish.publish_model(redis_client, model_dirs[1], activate=False)
    versions.activate_version(redis_client, first)
    removed = versions.prune(redis_client, keep=1)
    assert removed == []  # the only older version is the active one
    assert {v["version"] for v in versions.list_versions(redis_client)} == {first, _version(model_dirs[1])}


def test_failed_publish_leaves_active_model_untouched(redis_client: redis.Redis, model_dirs: list[Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = publish.publish_model(redis_client, model_dirs[0])
    keys_before = set(redis_client.scan_iter(count=1000))
    original = publish.customer_records

    def records_then_connection_lost(artifact):
        for n, item in enumerate(original(artifact)):
            if n == 150:
                raise redis.ConnectionError("connection lost half-way")
            yield item

    monkeypatch.setattr(publish, "customer_records", records_then_connection_lost)
    with pytest.raises(versions.PublishError, match="active model unchanged"):
        publish.publish_model(redis_client, model_dirs[1])
    assert redis_client.get(keys.ACTIVE_MODEL).decode() == first
    assert set(redis_client.scan_iter(count=1000)) == keys_before, "a failed publish left keys behind"
    assert [v["version"] for v in versions.list_versions(redis_client)] == [first]


def test_models_commands_through_the_cli(redis_url: str, model_dirs: list[Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`tailor models list | activate | rollback | delete` print what they did and agree with Redis;
    `--redis-url` goes before or after the action."""
    for model_dir in model_dirs:
        assert main(["--quiet", "publish", "--model", str(model_dir), "--redis-url", redis_url]) == 0
    first, second = (_version(d) for d in model_dirs)
    capsys.readouterr()
    assert main(["models", "--redis-url", redis_url, "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {second}" in listing and first in listing
    assert main(["models", "list", "--json", "--redis-url", redis_url]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [second, first]
    assert main(["models", "--redis-url", redis_url, "rollback"]) == 0
    assert capsys.readouterr().out.strip() == f"rolled back to {first}"
    assert main(["models", "activate", second, "--redis-url", redis_url]) == 0
    assert main(["models", "--redis-url", redis_url, "delete", first]) == 0
    assert capsys.readouterr().out.splitlines() == [f"activated {second}", f"deleted {first}"]


def test_models_list_shows_publish_times_in_iso_like_created_at(redis_url: str, redis_client: redis.Redis,
                                                                 model_dirs: list[Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`published_at` (epoch seconds in Redis) is ISO 8601 UTC to the second, the format of `created_at`,
    in `tailor models list --json` and in the plain table."""
    import re
    from datetime import datetime

    version = publish.publish_model(redis_client, model_dirs[0])
    stored = redis_client.zscore(keys.MODEL_VERSIONS, version)
    capsys.readouterr()
    assert main(["models", "list", "--json", "--redis-url", redis_url]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    assert iso.fullmatch(listed["created_at"]) and iso.fullmatch(listed["published_at"]), listed
    published = datetime.fromisoformat(listed["published_at"])
    assert published.timestamp() == int(stored) and published >= datetime.fromisoformat(listed["created_at"])
    assert main(["models", "--redis-url", redis_url, "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "PUBLISHED" in header and f"* {version}" in row and listed["published_at"] in row
