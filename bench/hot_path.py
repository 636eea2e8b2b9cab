"""CPU cost of one request per endpoint, in process (no HTTP server, no load generator), next to /healthz.

    python bench/hot_path.py --model MODEL_DIR [--requests 3000] [--profile customer [--sort tottime]]
        [--events-per-batch 10]
        [--steady] [--rounds 3] [--only rank,basket] [--wall]

Publishes MODEL_DIR to a private Redis, builds the app with ``create_app`` and drives it through a WSGI
environ (no test-client overhead), customers / items drawn at random from the model. Reports microseconds
of process CPU (and of the Redis server's) per request for /healthz and each endpoint, with the answer memo
on and off; ``--profile`` prints the cProfile top of one endpoint. ``--steady`` first reads every customer once
(through a one-item ``/rank``), which fills the customer cache and the rank memo as in a long-running
worker; ``--rounds`` repeats the endpoints in turn and keeps each one's lowest figure, the least disturbed
by other work on a shared machine. ``--wall`` instead times each request one after another (answer memo on):
wall-time percentiles with the Redis round trips in them, and the Redis time per request by command
(``INFO commandstats``, ``evalsha`` being the whole of a script with the commands it runs): the floor of a
request's latency with nothing queued before it. Complements bench/api_bench.py: this
isolates the app's own work from gunicorn and the network.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scoring.threads import pin_env_threads  # noqa: E402

pin_env_threads(1, openmp=True)  # as in every gunicorn worker (service.gunicorn_conf), before numpy loads

import numpy as np  # noqa: E402

from bench.wsgi_requests import call, environ, requests_for  # noqa: E402
from redis_state.versions import connect  # noqa: E402
from service import create_app  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis  # noqa: E402
from training.publish import publish_model  # noqa: E402


def redis_cpu(client) -> float:
    """CPU seconds the Redis server has used so far (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_per_request(app, make: Callable[[], dict], n: int, redis_client=None) -> tuple[float, float]:
    """Microseconds of this process's CPU and (with ``redis_client``) of Redis's per request."""
    envs = [make() for _ in range(n)]
    server = redis_cpu(redis_client) if redis_client is not None else 0.0
    start = time.process_time()
    for env in envs:
        call(app, env)
    app_us = (time.process_time() - start) / n * 1e6
    server = redis_cpu(redis_client) - server if redis_client is not None else 0.0
    return app_us, server / n * 1e6


def wall_times(app, make: Callable[[], dict], n: int, redis_client) -> tuple[np.ndarray, dict[str, float]]:
    """Milliseconds of wall time of ``n`` requests sent one after another, and Redis's microseconds per
    request by command over them."""
    envs = [make() for _ in range(n)]
    before = redis_client.info("commandstats")
    walls = np.empty(n)
    for k, env in enumerate(envs):
        started = time.perf_counter()
        call(app, env)
        walls[k] = time.perf_counter() - started
    after = redis_client.info("commandstats")
    spent = {name.removeprefix("cmdstat_"): (stats["usec"] - before.get(name, {}).get("usec", 0)) / n
             for name, stats in after.items()}
    return walls * 1e3, {name: us for name, us in sorted(spent.items(), key=lambda kv: -kv[1]) if us >= 1}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--profile", choices=["healthz", "customer", "similar", "basket", "rank", "events"])
    p.add_argument("--sort", choices=["cumulative", "tottime"], default="cumulative",
                   help="order of --profile's table: time under each function, or in its own code")
    p.add_argument("--events-per-batch", type=int, default=10, help="events per POST /v1/events")
    p.add_argument("--steady", action="store_true", help="read every customer once before measuring")
    p.add_argument("--rounds", type=int, default=1, help="rounds over the endpoints; each keeps its lowest")
    p.add_argument("--only", help="comma-separated endpoints to measure (default: all)")
    p.add_argument("--wall", action="store_true",
                   help="sequential wall-time percentiles and Redis time by command per request instead of CPU")
    args = p.parse_args()
    model = Path(args.model)
    customers, items = np.load(model / "customer_ids.npy"), np.load(model / "item_ids.npy")
    rng = np.random.default_rng(0)
    names = args.only.split(",") if args.only else ["healthz", "customer", "similar", "basket", "rank", "events"]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client = connect(server.url)
        publish_model(client, model)
        rows = []
        for memo in ("10000",) if args.wall else ("10000", "0"):
            app = create_app({"REDIS_URL": server.url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning",
                              "TAILOR_ANSWER_CACHE_SIZE": memo})
            tailor = app.extensions["tailor"]
            tailor.store.start()
            try:
                if args.steady:
                    for customer in customers.tolist():
                        call(app, environ("POST", f"/v1/customers/{customer}/rank",
                                          body=json.dumps({"items": [str(items[0])]}).encode()))
                if args.profile:
                    make = requests_for(args.profile, customers, items, rng, args.events_per_batch)
                    cpu_per_request(app, make, 500)
                    profiler = cProfile.Profile()
                    profiler.enable()
                    cpu_per_request(app, make, args.requests)
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)
                    return
                if args.wall:
                    print_wall_times(app, names, args, customers, items, rng, client)
                    return
                best: dict[str, tuple[float, float]] = {}
                for _ in range(args.rounds):
                    for name in names:
                        make = requests_for(name, customers, items, rng, args.events_per_batch)
                        cpu_per_request(app, make, 300)  # warm-up
                        best[name] = min(best.get(name, (np.inf, np.inf)),
                                         cpu_per_request(app, make, args.requests, client))
                rows += [(memo, name, *best[name]) for name in names]
            finally:
                tailor.close()
    health = {memo: us for memo, name, us, _ in rows if name == "healthz"}
    print("| answer memo | endpoint | CPU µs / request | vs /healthz | Redis CPU µs / request |")
    print("|---|---|---:|---:|---:|")
    for memo, name, us, redis_us in rows:
        relative = us / health.get(memo, np.nan)
        print(f"| {'on' if memo != '0' else 'off'} | {name} | {us:,.0f} | {relative:.2f}× | {redis_us:,.0f} |")


def print_wall_times(app, names: list[str], args: argparse.Namespace, customers: np.ndarray, items: np.ndarray,
                     rng: np.random.Generator, client) -> None:
    print("| endpoint | requests | p50 ms | p90 ms | p99 ms | max ms | Redis µs per request by command |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in names:
        make = requests_for(name, customers, items, rng, args.events_per_batch)
        cpu_per_request(app, make, 300)  # warm-up
        walls, spent = wall_times(app, make, args.requests, client)
        p50, p90, p99 = np.percentile(walls, [50, 90, 99])
        by_command = ", ".join(f"{command} {us:,.0f}" for command, us in spent.items())
        print(f"| {name} | {len(walls):,} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {walls.max():.2f} | {by_command} |")


if __name__ == "__main__":
    main()
