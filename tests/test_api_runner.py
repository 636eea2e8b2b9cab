"""`tailor serve` configuration: gunicorn settings from the environment, threads pinned, config table."""

from __future__ import annotations

import importlib
import os

import pytest

import settings as config
from service.app import runner
from tests.service_helpers import TrainedModel, served_api

pytest_plugins = ["tests.service_helpers"]


@pytest.fixture
def conf(monkeypatch: pytest.MonkeyPatch):
    def load(**env: str):
        for name in ("TAILOR_BIND", "TAILOR_WORKERS", "TAILOR_WORKER_CLASS", "TAILOR_THREADS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        from service import gunicorn_conf

        return importlib.reload(gunicorn_conf)

    yield load
    from service import gunicorn_conf

    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_defaults(conf):
    module = conf()
    assert module.bind == "127.0.0.1:8000"
    assert module.workers == 2 * (os.cpu_count() or 1) + 1
    assert module.worker_class == "gthread" and module.threads >= 1
    assert module.worker_connections == 2 * module.threads, "a cap spreads keep-alive clients over workers"
    assert module.accesslog is None, "no per-request logging on the hot path"
    assert module.control_socket_disable is True, "no per-user control socket shared by every server on the host"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"


def test_environment_and_command_line(conf):
    conf(TAILOR_BIND="0.0.0.0:9000", TAILOR_WORKERS="3", TAILOR_WORKER_CLASS="sync")
    options = runner.gunicorn_options()
    assert options["bind"] == ["0.0.0.0:9000"] and options["workers"] == 3
    assert options["worker_class"] == "sync" and options["threads"] == 1
    conf(TAILOR_THREADS="6", TAILOR_WORKER_CONNECTIONS="32")
    assert runner.gunicorn_options()["worker_connections"] == 32
    options = runner.gunicorn_options(bind="127.0.0.1:8123", workers=2)
    assert options["bind"] == ["127.0.0.1:8123"] and options["workers"] == 2
    assert callable(options["post_worker_init"])
    assert options["logger_class"].__name__ == "ErrorOnlyLogger", "tailor serve drops gunicorn's access line too"
    with pytest.raises(ValueError):
        runner.gunicorn_options(workers=0)


def test_bad_environment_is_one_line_error(conf, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(config.ConfigError):
        conf(TAILOR_WORKERS="many")


def test_settings_table_lists_every_variable():
    table = config.markdown_table()
    for setting in config.SETTINGS:
        assert f"`{setting.env}`" in table
    settings = config.Settings.load({"TAILOR_API_KEYS": "secret1:admin", "REDIS_URL": "redis://:pw@h:1/0"})
    masked = settings.masked()
    assert "secret1" not in str(masked) and "pw" not in masked["REDIS_URL"]
    with pytest.raises(config.ConfigError, match="TAILOR_REDIS_TIMEOUT_MS"):
        config.Settings.load({"TAILOR_REDIS_TIMEOUT_MS": "-1"})
    with pytest.raises(config.ConfigError, match="unknown setting"):
        config.Settings.load({"TAILOR_NOPE": "1"})


def test_tailor_serve_opens_no_per_user_control_socket(redis_url: str, retail: TrainedModel, tmp_path) -> None:
    """A real `tailor serve` leaves the user's home alone: with gunicorn >= 25.1 it would otherwise bind
    ~/.gunicorn/gunicorn.ctl, the one path every gunicorn of that user on the host shares."""
    import requests

    home = tmp_path / "home"
    home.mkdir()
    with served_api(redis_url, retail.path, tmp_path / "serve.log", workers=1, HOME=str(home),
                    XDG_RUNTIME_DIR="") as base:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert not (home / ".gunicorn").exists(), list(home.rglob("*"))
    assert "Control socket" not in (tmp_path / "serve.log").read_text()
