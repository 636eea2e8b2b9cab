"""Dockerfile and docker-compose.yml, checked as files (there is no Docker engine in CI) and by running the
image's entry point command from this checkout."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from service.app.runner import stop_server
from service.infrastructure.embedded_redis import free_port
from settings import SETTINGS, Settings
from tailor.parser import build_parser
from tests.service_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SETTING_NAMES = {s.env for s in SETTINGS}


def substitute(text: str, environ: dict[str, str] | None = None) -> str:
    """Compose's interpolation with defaults (``${VAR:-default}``; ``${VAR:?msg}`` needs ``environ``)."""
    environ = environ or {}

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in environ:
            return environ[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no default and is not given")

    return VARIABLE.sub(replace, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(substitute(COMPOSE.read_text(), {"TAILOR_API_KEYS": "k:admin"}))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_compose_services_volumes_and_healthchecks(compose: dict[str, Any]):
    services = compose["services"]
    assert set(services) == {"redis", "api", "trainer"}
    assert set(compose["volumes"]) >= {"redis-data", "models"}

    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = [str(part) for part in redis["command"]]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "always", "with everysec Redis may acknowledge an event it never writes"
    assert flags["--maxmemory-policy"] in {"noeviction", "volatile-lru", "volatile-lfu", "volatile-ttl"}, \
        "models and customer records have no TTL: a policy that may evict them is not allowed"
    assert re.fullmatch(r"\d+[kmg]b?", flags["--maxmemory"].lower())
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"]) and "ping" in redis["healthcheck"]["test"]
    assert redis.get("mem_limit") or redis.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")

    api = services["api"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    for port in api.get("ports", []):
        assert ":" not in str(port), f"a fixed host port ({port}) would stop `--scale api=N`"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert int(api["deploy"]["replicas"]) >= 2
    assert api["environment"]["REDIS_URL"].startswith("redis://redis:")

    trainer = services["trainer"]
    assert trainer["depends_on"]["redis"]["condition"] == "service_healthy"
    assert trainer["entrypoint"] == ["tailor"]
    mounts = {volume.split(":")[1]: volume for volume in trainer["volumes"]}
    assert mounts["/data"].endswith(":ro") and mounts["/var/lib/tailor/models"].startswith("models:")


def test_trainer_command_is_a_valid_retrain_invocation(compose: dict[str, Any]):
    """The real `tailor` parser accepts the trainer's command; it reads /data and events via REDIS_URL."""
    trainer = compose["services"]["trainer"]
    args = build_parser().parse_args([str(part) for part in trainer["command"]])
    assert args.command == "retrain" and args.data.startswith("/data/") and args.every > 0
    assert args.out == "/var/lib/tailor/models"
    assert args.redis_url is None and trainer["environment"]["REDIS_URL"], \
        "without --redis-url, retrain reads the events stream at $REDIS_URL"


def test_every_compose_variable_is_a_setting_or_documented():
    readme = (ROOT / "README.md").read_text()
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE.read_text())}
    assert {"REDIS_URL", "TAILOR_API_KEYS", "TAILOR_RETRAIN_TOLERANCE", "TAILOR_KEEP_VERSIONS"} <= used
    undocumented = sorted(name for name in used if name not in SETTING_NAMES and f"`{name}`" not in readme)
    assert not undocumented, f"document these in README.md (Docker Compose) or add them to settings: " \
                             f"{undocumented}"


def test_compose_defaults_are_valid_settings(compose: dict[str, Any]):
    """Every service setting that compose passes parses with its default value."""
    for name in ("api", "trainer"):
        environment = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        settings = {k: v for k, v in environment.items() if k in SETTING_NAMES}
        assert settings, name
        Settings.load(environ=settings)
    assert compose["services"]["api"]["environment"]["TAILOR_API_KEYS"] == "k:admin"
    with pytest.raises(AssertionError, match="TAILOR_API_KEYS"):
        substitute(COMPOSE.read_text())


def test_dockerfile_multi_stage_non_root_healthcheck_pinned():
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2 and all("slim" in stage for stage in stages)
    final = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    runtime = instructions[final:]
    assert any(op == "COPY" and args.startswith("--from=") for op, args in runtime), "wheels from the build stage"
    assert not any("build-essential" in args for op, args in runtime), "no compiler in the final image"
    users = [args for op, args in runtime if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "OPENBLAS_NUM_THREADS=1" in env and "OMP_NUM_THREADS=1" in env
    assert "PROMETHEUS_MULTIPROC_DIR=" in env
    health = [args for op, args in runtime if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


def entrypoint() -> list[str]:
    (args,) = [args for op, args in dockerfile_instructions() if op == "ENTRYPOINT"]
    return json.loads(args)


def test_entrypoint_modules_and_console_script_exist():
    command = entrypoint()
    assert command[0] == "gunicorn"
    config = command[command.index("-c") + 1]
    assert config.startswith("python:")
    module, _, attribute = command[-1].partition(":")
    for name in (config.removeprefix("python:"), module):
        assert subprocess.run([sys.executable, "-c", f"import importlib.util, sys; "
                               f"sys.exit(importlib.util.find_spec({name!r}) is None)"], cwd=ROOT).returncode == 0
    assert re.search(rf"^{re.escape(attribute)}\s*=", (ROOT / (module.replace('.', '/') + '.py')).read_text(), re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tailor"] == "tailor.cli:main", "the trainer's entry point"


@pytest.mark.slow
def test_entrypoint_serves_and_healthcheck_passes(redis_url: str, tmp_path: Path):
    """Run the image's ENTRYPOINT (gunicorn from this venv) and the image's HEALTHCHECK command against it."""
    port = free_port()
    command = entrypoint()
    command[0] = str(Path(sys.executable).with_name("gunicorn"))
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_BIND": f"127.0.0.1:{port}", "TAILOR_WORKERS": "2",
           "TAILOR_API_KEYS": "k-0123456789:read", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=60, interval=0.2)
        (health,) = [args for op, args in dockerfile_instructions() if op == "HEALTHCHECK"]
        check = json.loads(health[health.index("CMD") + 3:].strip())
        check = [sys.executable if part == "python" else part.replace("8000", str(port)) for part in check]
        assert subprocess.run(check, timeout=10).returncode == 0
        assert "tailor_http_requests_total" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop_server(server)
        log.close()
    assert server.returncode == 0, (tmp_path / "gunicorn.log").read_text()[-2000:]
    assert shlex.join(entrypoint()) == "gunicorn -c python:service.gunicorn_conf service.wsgi:app"
