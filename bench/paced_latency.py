"""Latency at fixed request rates, for several server settings side by side, under gunicorn with wrk.

    python bench/paced_latency.py --model MODEL_DIR --rates 0,100,200 [--script events.lua] [--connections 16]
        [--rounds 2] [--duration 8] [--setting NAME=VAR=VALUE,VAR=VALUE ...]

Publishes MODEL_DIR (with ``--warm``) to one private Redis and serves it with ``tailor serve`` once per
``--setting`` (a name, then environment variables for that server; ``default=`` adds one with none). In
each round every rate is run against every server in turn (interleaved, since the machine is shared), wrk
pacing each connection with exponential gaps (``bench/wrk/paced.lua``; rate 0 = back to back). Per run:
requests/s served, client p50 / p90 / p99, and the share of requests that spent at most 5 ms inside the
app (the service's own ``tailor_http_request_duration_seconds`` for that endpoint, from ``/metrics``): a
client p99 far above the in-app times is waiting outside the app (queues, wake-ups), one close to them is
the app's own work. Event batches hold ``--batch`` events (``events.lua``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import WRK, start, wrk  # noqa: E402
from bench.train_bench import machine  # noqa: E402
from service.app.runner import stop_server  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

#: The Flask endpoint each wrk script exercises (the label of its in-app latency histogram).
ENDPOINTS = {"events.lua": "events.post_events", "rank.lua": "recommendations.rank_items",
             "basket.lua": "recommendations.basket_recommendations",
             "customers.lua": "recommendations.customer_recommendations"}
IN_APP_LIMIT = "0.005"


def in_app_buckets(base: str, endpoint: str) -> dict[str, float]:
    """Cumulative counts of ``endpoint``'s in-app latency histogram, summed over workers and statuses."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    out: dict[str, float] = {}
    pattern = r'^tailor_http_request_duration_seconds_bucket\{([^}]*)\} ([\d.e+]+)$'
    for match in re.finditer(pattern, text, re.MULTILINE):
        labels = match.group(1)
        if f'endpoint="{endpoint}"' in labels:
            le = re.search(r'le="([^"]+)"', labels).group(1)
            out[le] = out.get(le, 0.0) + float(match.group(2))
    return out


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return name, env


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--rates", default="0,100,200", help="requests/s asked, comma-separated (0 = back to back)")
    p.add_argument("--script", default="events.lua", choices=sorted(ENDPOINTS))
    p.add_argument("--batch", type=int, default=100, help="events per request (events.lua)")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VAR=VALUE,...",
                   help="a server to compare, with its environment (repeatable; default: one, unchanged)")
    args = p.parse_args()
    settings = [parse_setting(s) for s in args.setting] or [("default", {})]
    rates = [int(r) for r in args.rates.split(",")]
    model = Path(args.model)
    tailor = [sys.executable, "-m", "tailor.cli", "--quiet"]
    print(f"Machine: {machine()}; `{' '.join(['python', 'bench/paced_latency.py', *sys.argv[1:]])}`\n")
    print("| round | rate asked | setting | served req/s | p50 ms | p90 ms | p99 ms | in app ≤ 5 ms | non-2xx |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp_name, EmbeddedRedis(Path(tmp_name) / "redis") as redis_server:
        tmp = Path(tmp_name)
        (tmp / "ids.txt").write_text("\n".join(np.load(model / "customer_ids.npy")) + "\n")
        (tmp / "items.txt").write_text("\n".join(np.load(model / "item_ids.npy")) + "\n")
        subprocess.run([*tailor, "publish", "--model", str(model), "--redis-url", redis_server.url, "--warm"],
                       check=True, cwd=ROOT, env={**os.environ, "TAILOR_LOG_LEVEL": "warning"})
        load = {"TAILOR_BENCH_IDS": str(tmp / "ids.txt"), "TAILOR_BENCH_ITEMS": str(tmp / "items.txt"),
                "TAILOR_BENCH_BATCH": str(args.batch)}
        if args.script in ("basket.lua", "customers.lua"):
            load["TAILOR_BENCH_IDS"] = str(tmp / ("items.txt" if args.script == "basket.lua" else "ids.txt"))
            load["TAILOR_BENCH_PATH"] = "/v1/customers/%s/recommendations?n=10"
        servers = []
        try:
            for name, env in settings:
                base = f"http://127.0.0.1:{free_port()}"
                server_env = {**os.environ, "REDIS_URL": redis_server.url, "TAILOR_PUBLIC_READ": "true",
                              "TAILOR_LOG_LEVEL": "warning", **env}
                server = start([*tailor, "serve", "--bind", base.removeprefix("http://")], server_env, base,
                               ready_path="/readyz")
                servers.append((name, base, server))
            def run(base: str, rate: int, duration: int) -> dict[str, float]:
                delay_ms = 1000.0 * args.connections / rate if rate > 0 else 0.0
                return wrk(base + "/", WRK / args.script, duration, args.connections, load, delay_ms=delay_ms)

            for _, base, _ in servers:  # warm-up of the endpoint
                run(base, 0, 3)
            for round_number in range(1, args.rounds + 1):
                for rate in rates:
                    for name, base, _ in servers:
                        before = in_app_buckets(base, ENDPOINTS[args.script])
                        result = run(base, rate, args.duration)
                        after = in_app_buckets(base, ENDPOINTS[args.script])
                        total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
                        fast = after.get(IN_APP_LIMIT, 0.0) - before.get(IN_APP_LIMIT, 0.0)
                        share = f"{100 * fast / total:.0f}%" if total else "–"
                        print(f"| {round_number} | {rate or 'unpaced'} | {name} | {result['rps']:,.1f} | "
                              f"{result['p50']:.1f} | {result['p90']:.1f} | {result['p99']:.1f} | {share} | "
                              f"{int(result['non2xx'])} |", flush=True)
        finally:
            for _, _, server in servers:
                stop_server(server)


if __name__ == "__main__":
    main()
