"""Redis memory and publish time of a model directory, in a private Redis (numbers of docs/SCALING.md).

    python bench/redis_memory.py MODEL_DIR [--events 200000]

Starts an empty ``EmbeddedRedis``, times ``tailor -q publish``, then reports ``used_memory`` added, the
``MEMORY USAGE`` of every model blob and of 2,000 customer records; with ``--events N`` also the cost per
event of the events stream and its idempotency markers (the keys and values ``POST /v1/events`` writes).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis_state import keys  # noqa: E402
from service.domain.events import Event, stream_fields  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis  # noqa: E402


def measure_model(client: redis.Redis, url: str, model_dir: str) -> dict[str, Any]:
    base = client.info("memory")["used_memory"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tailor.cli", "-q", "publish", "--model", model_dir,
                    "--redis-url", url], check=True, cwd=ROOT)
    publish_s = time.perf_counter() - started
    version = client.get(keys.ACTIVE_MODEL).decode()
    manifest = json.loads(client.get(keys.model_manifest(version)))
    blobs = {name: client.memory_usage(keys.model_blob(version, name), samples=0) for name in manifest["blobs"]}
    records = []
    for key in client.scan_iter(match=keys.customer_history_pattern(version), count=1000):
        records.append(client.memory_usage(key, samples=0))
        if len(records) == 2000:
            break
    records.sort()
    return {"model": model_dir, "counts": manifest["counts"], "publish_s": round(publish_s, 2),
            "keys": client.dbsize(), "used_memory_mb": round((client.info("memory")["used_memory"] - base) / 2**20, 1),
            "blobs_mb": {k: round(v / 2**20, 2) for k, v in blobs.items()},
            "record_bytes": {"mean": round(sum(records) / len(records)), "p50": records[len(records) // 2],
                             "p99": records[int(len(records) * 0.99)]}}


def measure_events(client: redis.Redis, n: int) -> dict[str, float]:
    client.delete(keys.EVENTS_STREAM)
    base = client.info("memory")["used_memory"]
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        kind = random.choice(["view", "purchase", "add_to_cart", "click"])
        event = Event(str(uuid.uuid4()), str(random.randint(10_000, 999_999)), kind, datetime.now(UTC),
                      item_id=str(random.randint(10_000, 99_999)), quantity=1.0 if kind == "purchase" else None,
                      price=2.5 if kind == "purchase" else None)
        pipe.xadd(keys.EVENTS_STREAM, stream_fields(event, now), maxlen=10 * n, approximate=True)
        pipe.set(keys.event_seen(event.customer_id, event.event_id), f"{now:.3f}", nx=True, ex=604_800)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    stream = client.memory_usage(keys.EVENTS_STREAM, samples=0)
    total = client.info("memory")["used_memory"] - base
    return {"stream_bytes_per_event": round(stream / n), "with_marker_bytes_per_event": round(total / n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a model directory written by `tailor train --out`")
    parser.add_argument("--events", type=int, default=0, help="also measure N events (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
        client = redis.Redis.from_url(server.url)
        result = measure_model(client, server.url, args.model)
        if args.events:
            result["events"] = measure_events(client, args.events)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
