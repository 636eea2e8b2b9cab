"""The operations settings: `tailor config` lists them masked; publish and retrain read theirs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import redis

from redis_state import keys
from redis_state.versions import PublishError
from service import create_app
from settings import SETTINGS, is_known_variable
from tailor.cli import main
from tests.service_helpers import Models
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


def test_tailor_config_lists_every_setting_with_secrets_masked(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("TAILOR_API_KEYS", "supersecret-key-1:admin,other-secret-2:read")
    monkeypatch.setenv("REDIS_URL", "redis://user:hunter2-password@redis:6379/0")
    monkeypatch.setenv("TAILOR_KEEP_VERSIONS", "5")
    monkeypatch.setenv("TAILOR_LOG_FORMAT", "text")
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    config = json.loads(out)
    assert list(config) == [s.env for s in SETTINGS]
    assert {"TAILOR_KEEP_VERSIONS", "TAILOR_RETRAIN_TOLERANCE", "PROMETHEUS_MULTIPROC_DIR", "TAILOR_LOG_FORMAT",
            "TAILOR_ACCESS_LOG", "TAILOR_METRICS_SCOPE"} <= set(config)
    assert config["TAILOR_KEEP_VERSIONS"] == 5 and config["TAILOR_RETRAIN_TOLERANCE"] == 0.02
    assert config["TAILOR_LOG_FORMAT"] == "text"
    for secret in ("supersecret-key-1", "other-secret-2", "hunter2-password"):
        assert secret not in out
    assert main(["config"]) == 0
    assert "hunter2-password" not in capsys.readouterr().out


def test_misspelt_variables_are_named_with_the_setting_meant(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]):
    """A variable nothing reads would leave its setting at the default without a word (``TAILOR_REDIS_URL``:
    every command on the Redis at 127.0.0.1:6379), so the command and the service warn, naming the one meant."""
    monkeypatch.setenv("TAILOR_REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.setenv("TAILOR_WORKER", "3")
    monkeypatch.setenv("TAILOR_SPARK_PARTITIONS", "8")  # read by `--engine spark`
    monkeypatch.setenv("TAILOR_BENCH_IDS", "ids.txt")  # the benchmarks'
    assert main(["config", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["REDIS_URL"] == "redis://127.0.0.1:6379/0"  # stdout stays the document
    warnings = captured.err.splitlines()
    assert warnings == [
        "tailor: warning: TAILOR_REDIS_URL is not a Tailor setting and is ignored (did you mean REDIS_URL?)",
        "tailor: warning: TAILOR_WORKER is not a Tailor setting and is ignored (did you mean TAILOR_WORKERS?)"]
    logged: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("tailor").addHandler(handler)
    try:
        create_app({"TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"})
    finally:
        logging.getLogger("tailor").removeHandler(handler)
    assert [line.removeprefix("tailor: warning: ") for line in warnings] == logged
    capsys.readouterr()  # the app's own log lines
    monkeypatch.delenv("TAILOR_REDIS_URL")
    monkeypatch.delenv("TAILOR_WORKER")
    assert main(["config"]) == 0
    assert capsys.readouterr().err == ""


def test_every_tailor_variable_the_project_reads_is_known():
    """The warning above must never cry wolf: each ``TAILOR_*`` name in the code, the benchmarks and the
    deployment files is a setting or listed in ``settings.OTHER_VARIABLES``."""
    root = Path(__file__).resolve().parent.parent
    files = [path for folder in ("service", "training", "scoring", "redis_state", "tailor", "bench", ".ci")
             for path in (root / folder).rglob("*") if path.is_file() and path.suffix in (".py", ".lua", "")]
    files += [root / "docker-compose.yml", root / "Dockerfile"]
    found = {(name, path.relative_to(root).as_posix()) for path in files
             for name in re.findall(r"\bTAILOR_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace"))}
    assert len(found) > 30
    assert sorted((name, path) for name, path in found if not is_known_variable(name)) == []


def test_invalid_operations_settings_are_one_line_errors(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("TAILOR_RETRAIN_TOLERANCE", "1.5")
    assert main(["retrain", "--data", "nowhere.csv"]) == 2
    assert "TAILOR_RETRAIN_TOLERANCE='1.5'" in capsys.readouterr().err
    monkeypatch.setenv("TAILOR_LOG_FORMAT", "xml")
    assert main(["config"]) == 2
    assert "TAILOR_LOG_FORMAT" in capsys.readouterr().err


def test_keep_versions_from_the_environment(models: Models, redis_client: redis.Redis,
                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILOR_KEEP_VERSIONS", "0")
    with pytest.raises(PublishError, match="TAILOR_KEEP_VERSIONS"):
        publish_model(redis_client, models.retail.path)
    assert redis_client.dbsize() == 0, "a bad setting fails before anything is uploaded"
    monkeypatch.setenv("TAILOR_KEEP_VERSIONS", "2")
    for model in (models.retail, models.retail_popular, models.generic):
        publish_model(redis_client, model.path)
    versions = {v.decode() for v in redis_client.zrange(keys.MODEL_VERSIONS, 0, -1)}
    assert versions == {models.retail_popular.version, models.generic.version}
    monkeypatch.setenv("TAILOR_KEEP_VERSIONS", "1")
    publish_model(redis_client, models.retail.path)
    assert [v.decode() for v in redis_client.zrange(keys.MODEL_VERSIONS, 0, -1)] == [models.retail.version]
