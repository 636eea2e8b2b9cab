"""`tailor demo`: the whole service on a fresh machine, from the sample shipped in the repo.

Starts an embedded real Redis under ``var/redis`` when REDIS_URL is unset, trains on the sample excerpt of
Online Retail, publishes the model, prints example requests and serves on 127.0.0.1:8000.
"""

from __future__ import annotations

import atexit
import os
import secrets
import sys
from pathlib import Path

from redis_state.versions import connect
from scoring.artifact import default_model_dir, write_artifact
from scoring.models import DEFAULT_ALGORITHM
from training.data import load_purchase_log
from training.pipeline import PhaseTimer, train_artifact
from training.publish import publish_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "online_retail_sample.csv"
VAR = Path(os.environ.get("TAILOR_VAR_DIR", "var"))


def _ensure_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from service.infrastructure.embedded_redis import EmbeddedRedis

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

    url = _ensure_redis()
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
    return serve(bind=bind, workers=workers)

