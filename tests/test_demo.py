"""`tailor demo` run for real (embedded Redis, training, gunicorn): a second demo fails at once, before training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from service.infrastructure.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent


def demo(var: Path, port: int, **popen: object) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TAILOR_API_KEYS")}
    env.update(TAILOR_VAR_DIR=str(var), PYTHONPATH=str(ROOT), TAILOR_WORKERS="1")
    return subprocess.Popen([sys.executable, "-m", "tailor", "demo", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                            cwd=var.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **popen)


def second(var: Path, port: int) -> tuple[int, str, float]:
    started = time.monotonic()
    process = demo(var, port)
    _, err = process.communicate(timeout=60)
    return process.returncode, err, time.monotonic() - started


@pytest.mark.slow
def test_a_second_demo_fails_before_training_and_the_first_prints_its_redis_url(tmp_path: Path) -> None:
    var = tmp_path / "var"
    port = free_port()
    first = demo(var, port, start_new_session=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert first.stderr is not None
        while not any(line.startswith("  export REDIS_URL=") for line in lines):
            assert time.monotonic() < deadline and first.poll() is None, "".join(lines)
            lines.append(first.stderr.readline())
        export = next(line for line in lines if line.startswith("  export REDIS_URL="))
        url = export.strip().removeprefix("export REDIS_URL=")
        assert redis.Redis.from_url(url).get("tailor:models:active"), "the printed URL is the demo's Redis"
        time.sleep(1.0)  # gunicorn listens

        # the same port: refused before Redis, training or keys
        status, err, took = second(var, port)
        assert status == 2, err
        assert f"127.0.0.1:{port} is already in use" in err
        assert "training" not in err and "admin key" not in err and "published" not in err
        assert took < 30

        # another port, same var/redis: the lock refuses it (no second Redis on the first one's files)
        status, err, _ = second(var, free_port())
        assert status == 2, err
        assert "is in use by another `tailor demo`" in err and "training" not in err
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=30)
