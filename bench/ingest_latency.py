"""Latency of event batches sent straight to the app (no HTTP server, no load generator), against a private Redis.

    python bench/ingest_latency.py --model MODEL_DIR [--rate 60] [--threads 3] [--batch 100] [--seconds 8]

``--threads`` client threads post ``POST /v1/events`` batches through the WSGI app at ``--rate`` batches/s in
all (jittered gaps), random customers and items of the model, 1 purchase in 5. Prints the latency
percentiles of the app + Redis alone: compare with the p99 of ``bench/api_bench.py``, which adds gunicorn,
wrk and the scheduling of all of them on the same cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scoring.threads import pin_env_threads  # noqa: E402

pin_env_threads(1, openmp=True)

import numpy as np  # noqa: E402

from bench.wsgi_requests import call, environ  # noqa: E402
from redis_state.versions import connect  # noqa: E402
from service import create_app  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis  # noqa: E402
from training.publish import publish_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, default=60.0, help="batches per second, all threads together")
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--batch", type=int, default=100, help="events per batch")
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args()
    model = Path(args.model)
    customers = np.load(model / "customer_ids.npy").tolist()
    items = np.load(model / "item_ids.npy").tolist()
    ids = itertools.count()

    def body(rng: random.Random) -> bytes:
        events = []
        for _ in range(args.batch):
            n = next(ids)
            events.append({"event_id": f"lat-{n}", "customer_id": rng.choice(customers), "item_id": rng.choice(items),
                           "type": "purchase" if n % 5 == 0 else "view", "timestamp": "2011-12-10T12:00:00Z"})
        return json.dumps({"events": events}).encode()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        publish_model(connect(server.url), model)
        app = create_app({"REDIS_URL": server.url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"})
        tailor = app.extensions["tailor"]
        tailor.store.start()
        tailor.repository.customers.start()
        latencies: list[float] = []

        def client(seed: int) -> None:
            rng = random.Random(seed)
            gap = args.threads / args.rate
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                env = environ("POST", "/v1/events", body=body(rng))
                start = time.perf_counter()
                call(app, env)
                took = time.perf_counter() - start
                latencies.append(took)
                time.sleep(max(0.0, gap - took) * rng.uniform(0.5, 1.5))

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tailor.close()
    ms = np.asarray(latencies) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    print(f"{len(ms)} batches of {args.batch} in {args.seconds:.0f} s ({len(ms) / args.seconds:.0f}/s), "
          f"{args.threads} threads: p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {ms.max():.1f} ms")


if __name__ == "__main__":
    main()
