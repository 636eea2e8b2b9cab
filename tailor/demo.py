"""`tailor demo`: the whole service on a fresh machine, from the sample shipped in the repo.

Starts an embedded real Redis under ``var/redis`` when REDIS_URL is unset, trains on the sample excerpt of
Online Retail, publishes the model, prints example requests and serves on 127.0.0.1:8000.

Before any of that it checks that the address to serve on is free and takes an exclusive lock of
``var/redis`` (a second demo would otherwise train, publish into the first one's Redis and print keys, only
to fail on the busy port at the end).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import secrets
import shlex
import socket
import sys
from pathlib import Path
from typing import IO

from redis_state.versions import connect
from scoring.artifact import default_model_dir, write_artifact
from scoring.models import DEFAULT_ALGORITHM
from training.data import load_purchase_log
from training.pipeline import PhaseTimer, train_artifact
from training.publish import publish_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "online_retail_sample.csv"
VAR = Path(os.environ.get("TAILOR_VAR_DIR", "var"))


class DemoError(Exception):
    """Why the demo cannot start (one line for the user)."""


#: The open lock file of ``var/redis`` (held until the process exits; gunicorn's workers inherit it).
_LOCK: IO[str] | None = None


def check_bind(bind: str) -> None:
    """``DemoError`` unless HOST:PORT can be listened on now (the same way gunicorn binds it)."""
    host, _, port_text = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise DemoError(f"--bind {bind!r} is not HOST:PORT") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(f"{bind} is already in use (another `tailor demo` or server?); stop it or pass "
                                f"--bind HOST:OTHER_PORT") from None
            raise DemoError(f"cannot listen on {bind}: {exc.strerror or exc}") from None


def lock_data_dir(directory: Path) -> None:
    """Hold an exclusive lock of ``directory`` (the embedded Redis's data) for the life of this process."""
    global _LOCK
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / "demo.lock", "w")  # noqa: SIM115 - held open on purpose until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DemoError(f"{directory} is in use by another `tailor demo`; stop it first, or set TAILOR_VAR_DIR "
                        f"to another directory") from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _LOCK = handle


def redis_export_line(url: str) -> str:
    """The shell line that points other `tailor` commands (publish, models, retrain ...) at this Redis."""
    return f"export REDIS_URL={shlex.quote(url)}"


def _ensure_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from service.infrastructure.embedded_redis import EmbeddedRedis

    lock_data_dir(VAR / "redis")
    server = EmbeddedRedis(VAR / "redis", persist=True).start()
    atexit.register(server.stop)
    os.environ["REDIS_URL"] = server.url
    print(f"started embedded Redis at {server.url} (data in {VAR / 'redis'})", file=sys.stderr)
    return server.url


def examples(base: str, customer_id: str, item_id: str) -> str:
    return "\n".join([
        "Try:",
        f"  curl -s '{base}/v1/customers/{customer_id}/recommendations?n=5'",
        f"  curl -s '{base}/v1/customers/{customer_id}/recommendations?n=5&exclude_purchased=true'",
        f"  curl -s '{base}/v1/items/{item_id}/similar?n=5'",
        f"  curl -s -X POST '{base}/v1/recommendations' -H 'Content-Type: application/json' "
        f"-d '{{\"items\": [\"{item_id}\"], \"n\": 5}}'",
        f"  curl -s '{base}/v1/popular?n=5&country=United%20Kingdom'",
        f"  curl -s '{base}/v1/customers/{customer_id}/profile'",
        f"  API docs: {base}/docs    OpenAPI: {base}/openapi.json",
    ])


def run_demo(bind: str = "127.0.0.1:8000", workers: int | None = None, data: Path = SAMPLE) -> int:
    """Train on the sample, publish, print example requests and serve (blocks until interrupted)."""
    from service.app.runner import serve

    try:
        check_bind(bind)
        url = _ensure_redis()
    except DemoError as exc:
        print(f"tailor: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TAILOR_PUBLIC_READ", "true")
    admin_key = None
    if not os.environ.get("TAILOR_API_KEYS"):  # a fresh key per demo run, for the console and admin calls
        admin_key = secrets.token_urlsafe(18)
        os.environ["TAILOR_API_KEYS"] = f"{admin_key}:admin"
    timer = PhaseTimer()
    print(f"training on {data}", file=sys.stderr)
    with timer.phase("read"):
        log = load_purchase_log(data, fmt="online-retail")
    artifact = train_artifact(log, DEFAULT_ALGORITHM, {}, timer=timer)
    model_dir = default_model_dir(artifact.version, VAR)
    write_artifact(model_dir, artifact)
    version = publish_model(connect(url), model_dir)
    print(f"published model {version}", file=sys.stderr)
    busiest = int(artifact.customers.orders.argmax())
    popular_item = artifact.item_ids[artifact.popular["global"]["items"][0]]
    print(examples(f"http://{bind}", str(artifact.customer_ids[busiest]), str(popular_item)), file=sys.stderr)
    if admin_key:
        print(f"  Console: http://{bind}/console  (admin key for this run: {admin_key})", file=sys.stderr)
    print(f"Other `tailor` commands (publish, models, retrain, train --publish) use this Redis after:\n"
          f"  {redis_export_line(url)}", file=sys.stderr)
    return serve(bind=bind, workers=workers)

