"""HTTP benchmark of the API under gunicorn, against a private real Redis, with wrk on the same machine.

    python bench/api_bench.py [--data ../shared/datasets/online-retail/online_retail.csv.gz] [--duration 10]
        [--answer-memo on|off] [--customer-cache on|off] [--warmup 2] [--redis tcp|unix]
        [--event-batches 10,100] [--only customer,...] [--fixed-basket] [--warm]

For each endpoint: saturation throughput next to the app's own `/healthz` measured in the same run (the
ratio is what is comparable on a shared, noisy machine), then a paced run at half of the endpoint's
maximum for latency percentiles. Requests are spread over all customers / items of the model. For event
ingestion the ratio is events/s over /healthz requests/s (the issue's unit), one row per batch size.

``--answer-memo off`` serves with ``TAILOR_ANSWER_CACHE_SIZE=0`` (every request is scored) and
``--customer-cache off`` with ``TAILOR_CUSTOMER_CACHE_SIZE=0`` (every customer is read from Redis). With them
on, ``--warmup`` decides how much of the catalogue each worker has seen before the measured runs (steady
state needs about customers x workers requests); the hit-rate column is read from ``/metrics`` around the
measured run. The last column is the CPU time of the server's processes and Redis per request during the
saturation run, next to the same for ``/healthz``: where the ratio comes from. ``--fixed-basket`` adds a
row that posts one basket again and again (its answer remembered after the first request): the cost of
the POST path without any scoring. Needs `wrk` (Debian package `wrk`) and Linux (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import TextIO

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.train_bench import machine  # noqa: E402
from service.app.runner import stop_server  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

WRK = ROOT / "bench" / "wrk"


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from `wrk --latency` output."""
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s))", output, re.MULTILINE)
        out[f"p{pct}"] = ms(match.group(1)) if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    out["non2xx"] = float(errors.group(1)) if errors else 0.0
    socket_errors = re.search(r"Socket errors: (.*)", output)
    out["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return out


def cpu_seconds(root_pids: list[int]) -> float:
    """User + system CPU seconds so far of these processes and all their descendants (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree = set(root_pids)
    grown = True
    while grown:
        children = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(used.get(pid, 0.0) for pid in tree)


def wrk(url: str, script: Path | None, duration: int, connections: int, env: dict[str, str],
        delay_ms: float = 0.0) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script is None and delay_ms > 0:  # plain GETs are paced too (without a script wrk sends back to back)
        script = WRK / "paced.lua"
    if script:
        cmd[1:1] = ["-s", str(script)]
    run_env = {**os.environ, **env, "TAILOR_BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, check=True)
    return parse_wrk(proc.stdout)


def counters(base: str) -> dict[str, float]:
    """The service's customer-read and answer counters and its popularity fallbacks (``fallback``), summed over
    workers, from /metrics."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name, label in (("tailor_customer_reads_total", "source"), ("tailor_answers_total", "outcome")):
        for match in re.finditer(rf'^{name}{{{label}="(\w+)"}} ([\d.e+]+)$', text, re.MULTILINE):
            out[match.group(1)] = float(match.group(2))
    fallback = re.search(r"^tailor_fallback_answers_total ([\d.e+]+)$", text, re.MULTILINE)
    out["fallback"] = float(fallback.group(1)) if fallback else 0.0
    return out


def share(before: dict[str, float], after: dict[str, float], hit: str, miss: str) -> str:
    hits, misses = after.get(hit, 0) - before.get(hit, 0), after.get(miss, 0) - before.get(miss, 0)
    return f"{100 * hits / (hits + misses):.0f}%" if hits + misses else "–"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared/datasets/online-retail/online_retail.csv.gz"))
    p.add_argument("--model", help="an existing model directory (default: train one on --data)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--only", help="comma-separated endpoint names to run (customer, similar, basket, events)")
    p.add_argument("--answer-memo", choices=["on", "off"], default="on",
                   help="off: TAILOR_ANSWER_CACHE_SIZE=0, every request is scored")
    p.add_argument("--customer-cache", choices=["on", "off"], default="on",
                   help="off: TAILOR_CUSTOMER_CACHE_SIZE=0, every customer is read from Redis")
    p.add_argument("--warmup", type=int, default=2, help="seconds of load per endpoint before measuring")
    p.add_argument("--redis", choices=["tcp", "unix"], default="tcp", help="how the API reaches Redis")
    p.add_argument("--event-batches", default="10,100", help="events per POST /v1/events, one row each")
    p.add_argument("--fixed-basket", action="store_true",
                   help="also post one basket repeatedly (a remembered answer: the POST path without scoring)")
    p.add_argument("--reference", type=int, default=0, metavar="ROUNDS",
                   help="instead: issue 15's table, every hot endpoint against the bare reference apps "
                        "(bench/reference_apps.py) under the same gunicorn settings, ROUNDS interleaved rounds "
                        "(bench/reference_rounds.py)")
    p.add_argument("--baseline", metavar="DIR",
                   help="with --reference: also serve the API of this checkout (e.g. a worktree of main) in every "
                        "round, for the before/after comparison")
    p.add_argument("--warm", action="store_true",
                   help="publish with `tailor publish --warm`: every customer's default answer is computed and "
                        "shared before the API starts (what a deploy does; the baseline ignores these answers)")
    p.add_argument("--reference-batch", type=int, default=100, help="with --reference: events per POST /v1/events")
    args = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    tailor = [sys.executable, "-m", "tailor.cli", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = Path(args.model) if args.model else tmp / "model"
        if not args.model:
            subprocess.run([*tailor, "train", "--data", args.data, "--format", "online-retail", "--no-eval",
                            "--out", str(model)], check=True, cwd=ROOT)
        with EmbeddedRedis(tmp / "redis") as redis_server:
            subprocess.run([*tailor, "publish", "--model", str(model), "--redis-url", redis_server.url,
                            *(["--warm"] if args.warm else [])], check=True, cwd=ROOT,
                           env={**os.environ, "TAILOR_LOG_LEVEL": "warning"})
            if args.reference:
                from bench import reference_rounds

                print(reference_rounds.run(model, tmp, args, redis_server.url, redis_server.process.pid))
                return
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {**os.environ, "REDIS_URL": redis_server.url if args.redis == "tcp" else redis_server.unix_url,
                   "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"}
            if args.answer_memo == "off":
                env["TAILOR_ANSWER_CACHE_SIZE"] = "0"
            if args.customer_cache == "off":
                env["TAILOR_CUSTOMER_CACHE_SIZE"] = "0"
            serve = [*tailor, "serve", "--bind", f"127.0.0.1:{port}"]
            if args.workers:
                serve += ["--workers", str(args.workers)]
            server = start(serve, env, base, ready_path="/readyz")
            try:
                report = run_all(base, model, tmp, args, [server.pid, redis_server.process.pid])
            finally:
                stop_server(server)
    print(report)


def start(command: list[str], env: dict[str, str], base: str, *, ready_path: str = "/healthz",
          log: TextIO | None = None, timeout_s: float = 60.0, cwd: Path = ROOT) -> subprocess.Popen:
    """A server process (output to ``log``, else discarded), once ``ready_path`` answers 200 and the server has
    finished starting (``settle``)."""
    out = log if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                settle([server.pid], deadline)
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            sys.exit(f"{command} did not become ready" + (f" (see {log.name})" if log is not None else ""))
        time.sleep(0.2)


def settle(pids: list[int], deadline: float, window_s: float = 0.5, idle_share: float = 0.05) -> None:
    """Wait until these process trees use under ``idle_share`` of a core over ``window_s``: a server still
    starting (the API's workers read their customers ahead in the background) is not measured yet."""
    used = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = cpu_seconds(pids)
        if now - used < idle_share * window_s:
            return
        used = now


def run_all(base: str, model: Path, tmp: Path, args: argparse.Namespace, service_pids: list[int]) -> str:
    """One table row per endpoint; ``service_pids`` (server, Redis) are measured for CPU per request."""
    customers = tmp / "customers.txt"
    customers.write_text("\n".join(np.load(model / "customer_ids.npy")) + "\n")
    items = tmp / "items.txt"
    items.write_text("\n".join(np.load(model / "item_ids.npy")) + "\n")
    cases: list[tuple[str, Path, dict[str, str], int]] = [
        ("customer recommendations", WRK / "customers.lua",
         {"TAILOR_BENCH_IDS": str(customers), "TAILOR_BENCH_PATH": "/v1/customers/%s/recommendations?n=10"}, 1),
        ("similar items", WRK / "customers.lua",
         {"TAILOR_BENCH_IDS": str(items), "TAILOR_BENCH_PATH": "/v1/items/%s/similar?n=10"}, 1),
        ("basket recommendations", WRK / "basket.lua", {"TAILOR_BENCH_IDS": str(items)}, 1),
    ]
    if args.fixed_basket:
        one_item = tmp / "one_item.txt"
        one_item.write_text(items.read_text().split("\n", 1)[0] + "\n")
        cases.append(("basket recommendations, one basket repeated", WRK / "basket.lua",
                      {"TAILOR_BENCH_IDS": str(one_item)}, 1))
    for batch in (int(b) for b in args.event_batches.split(",") if b):
        cases.append((f"events (batches of {batch})", WRK / "events.lua",
                      {"TAILOR_BENCH_IDS": str(customers), "TAILOR_BENCH_ITEMS": str(items),
                       "TAILOR_BENCH_BATCH": str(batch)}, batch))
    if args.only:
        wanted = args.only.split(",")
        cases = [case for case in cases if any(case[0].startswith(w) for w in wanted)]
    c, d = args.connections, args.duration
    wrk(f"{base}/healthz", None, 3, c, {})  # warm-up
    lines = [f"Machine: {machine()}; date {date.today().isoformat()}; wrk -t1 -c{c}, {d} s per run; answer memo "
             f"{args.answer_memo}, customer cache {args.customer_cache}, Redis over {args.redis}; "
             f"`{' '.join(['python', 'bench/api_bench.py', *sys.argv[1:]])}`", "",
             "| endpoint | max req/s | /healthz req/s (same run) | ratio | paced req/s (½ max) | p50 ms | p99 ms | "
             "non-2xx | customer cache / answer memo hits | server + Redis CPU µs per request (/healthz) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, script, env, per_request in cases:
        wrk(base + "/", script, args.warmup, c, env)  # warm-up of this endpoint
        cpu_start = cpu_seconds(service_pids)
        health_before = wrk(f"{base}/healthz", None, d, c, {})
        cpu_health = cpu_seconds(service_pids) - cpu_start
        seen = counters(base)
        cpu_start = cpu_seconds(service_pids)
        endpoint = wrk(base + "/", script, d, c, env)
        cpu_endpoint = cpu_seconds(service_pids) - cpu_start
        seen_after = counters(base)
        health_after = wrk(f"{base}/healthz", None, d, c, {})
        health = (health_before["rps"] + health_after["rps"]) / 2
        target = endpoint["rps"] / 2
        paced = wrk(base + "/", script, d, c, env, delay_ms=1000.0 * c / target)
        rate = f"{endpoint['rps']:,.0f}"
        if per_request > 1:
            rate += f" ({endpoint['rps'] * per_request:,.0f} events/s)"
        lines.append(f"| {name} | {rate} | {health:,.0f} | **{endpoint['rps'] * per_request / health:.2f}** | "
                     f"{paced['rps']:,.0f} | {paced['p50']:.1f} | **{paced['p99']:.1f}** | "
                     f"{int(endpoint['non2xx'] + paced['non2xx'])} | "
                     f"{share(seen, seen_after, 'cache', 'redis')} / {share(seen, seen_after, 'memo', 'computed')} | "
                     f"{1e6 * cpu_endpoint / (endpoint['rps'] * d):,.0f} "
                     f"({1e6 * cpu_health / (health_before['rps'] * d):,.0f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
