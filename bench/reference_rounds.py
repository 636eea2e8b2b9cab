"""Issue 15's benchmark: every hot endpoint of the API next to the bare reference apps, in one run.

Called by ``python bench/api_bench.py --reference ROUNDS [--baseline DIR]``. Each round starts, one after the
other and under the same gunicorn settings (``service.gunicorn_conf``), the bare constant view, the bare
one-GET view (``bench/reference_apps.py``), the API of this checkout and, with ``--baseline DIR``, the API of
another checkout (e.g. a worktree of ``main``) - so "no endpoint slower than before" is measured in the same
run as the ratios. Ratios are medians over the rounds (the machine is shared: only numbers of one run are
compared). Per endpoint: saturation req/s, the server tree's CPU per request (gunicorn processes + Redis:
less sensitive to other people's load than req/s), then a paced run at half of that round's maximum for p99.

Between two APIs the events they posted are deleted (live purchases, sessions, markers, the stream), so every
API starts from the published data; the customer cache and answer memo start empty with each server.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import redis
import requests

from bench.api_bench import ROOT, WRK, counters, cpu_seconds, start, wrk
from bench.reference_apps import write_record
from bench.train_bench import machine
from service.app.runner import stop_server
from service.infrastructure.embedded_redis import free_port

#: (name, wrk script, extra environment, events per request); ids files are filled in by ``cases``.
Case = tuple[str, Path | None, dict[str, str], int]
#: Targets of issue 15: endpoint -> (reference, least ratio); events: least events/s.
TARGETS = {"/healthz": ("constant", 0.8), "customer recommendations": ("one-GET", 0.75),
           "similar items": ("one-GET", 0.75), "basket recommendations": ("one-GET", 0.6),
           "rank (POST /v1/customers/{id}/rank)": ("one-GET", 0.6)}
EVENTS_TARGET = 30_000
EVENT_PREFIXES = ("tailor:live:*", "tailor:session:*", "tailor:event:*", "tailor:events*")


def cases(customers: Path, items: Path, batch: int) -> list[Case]:
    ids = {"TAILOR_BENCH_IDS": str(customers)}
    return [
        ("/healthz", None, {}, 1),
        ("customer recommendations", WRK / "customers.lua",
         {**ids, "TAILOR_BENCH_PATH": "/v1/customers/%s/recommendations?n=10"}, 1),
        ("similar items", WRK / "customers.lua",
         {"TAILOR_BENCH_IDS": str(items), "TAILOR_BENCH_PATH": "/v1/items/%s/similar?n=10"}, 1),
        ("basket recommendations", WRK / "basket.lua", {"TAILOR_BENCH_IDS": str(items)}, 1),
        ("rank (POST /v1/customers/{id}/rank)", WRK / "rank.lua", {**ids, "TAILOR_BENCH_ITEMS": str(items)}, 1),
        (f"events (batches of {batch})", WRK / "events.lua",
         {**ids, "TAILOR_BENCH_ITEMS": str(items), "TAILOR_BENCH_BATCH": str(batch)}, batch),
    ]


def forget_events(url: str) -> None:
    """Delete what the events of a run wrote, so the next API serves the published data alone."""
    client = redis.Redis.from_url(url)
    for pattern in EVENT_PREFIXES:
        batch = []
        for key in client.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def tailor_counters(base: str) -> dict[str, float]:
    """Answers by outcome (memo / shared / computed) and popular fallbacks so far, from the API's /metrics."""
    try:
        seen = counters(base)
    except requests.RequestException:  # a bare app
        return {}
    return {**{f"answers:{outcome}": seen[outcome] for outcome in ("memo", "shared", "computed") if outcome in seen},
            "fallback": seen["fallback"]}


def measure(base: str, case: Case, args: argparse.Namespace, pids: list[int]) -> dict[str, float]:
    """Saturation req/s and CPU µs per request of ``pids``' trees, then p99 paced at half that maximum; the
    API's answer outcomes and Redis-timeout fallbacks during the saturation run."""
    _, script, env, _ = case
    url = f"{base}/healthz" if script is None else base + "/"
    c, d = args.connections, args.duration
    wrk(url, script, args.warmup, c, env)
    seen = tailor_counters(base)
    cpu = cpu_seconds(pids)
    top = wrk(url, script, d, c, env)
    cpu = cpu_seconds(pids) - cpu
    seen = {name: value - seen.get(name, 0.0) for name, value in tailor_counters(base).items()}
    paced = wrk(url, script, d, c, env, delay_ms=1000.0 * c / max(top["rps"] / 2, 1.0))
    return {"rps": top["rps"], "cpu_us": 1e6 * cpu / max(top["rps"] * d, 1.0), "p99": paced["p99"],
            "paced": paced["rps"], "non2xx": top["non2xx"] + paced["non2xx"], **seen}


def run(model: Path, tmp: Path, args: argparse.Namespace, redis_url: str, redis_pid: int) -> str:
    """The rounds, then the table (markdown)."""
    write_record(redis_url)
    customers, items = tmp / "customers.txt", tmp / "items.txt"
    customers.write_text("\n".join(np.load(model / "customer_ids.npy")) + "\n")
    items.write_text("\n".join(np.load(model / "item_ids.npy")) + "\n")
    every = cases(customers, items, args.reference_batch)
    wanted = args.only.split(",") if args.only else None
    tailor_cases = [case for case in every if wanted is None or case[0] == "/healthz"
                    or any(case[0].startswith(w) for w in wanted)]
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"}
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf"]
    apps: dict[str, tuple[list[str], Path, list[Case]]] = {
        "bare constant": ([*gunicorn, "bench.reference_apps:constant"], ROOT, every[:1]),
        "bare one-GET": ([*gunicorn, "bench.reference_apps:redis_get"], ROOT, every[1:2]),
        "Tailor": ([*gunicorn, "service.wsgi:app"], ROOT, tailor_cases),
    }
    if args.baseline:
        apps["Tailor baseline"] = ([*gunicorn, "service.wsgi:app"], Path(args.baseline).resolve(), tailor_cases)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    loads = [os.getloadavg()[0]]
    started = datetime.now(UTC)
    for _ in range(args.reference):
        for app, (command, root, app_cases) in apps.items():
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start(command, {**env, "TAILOR_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(root)}, base,
                           ready_path="/healthz" if app.startswith("bare") else "/readyz", cwd=root)
            try:
                for case in app_cases:
                    results.setdefault((app, case[0]), []).append(measure(base, case, args, [server.pid, redis_pid]))
                    loads.append(os.getloadavg()[0])
            finally:
                stop_server(server)
            if app.startswith("Tailor"):
                forget_events(redis_url)
    return table(results, args, started, loads)


def table(results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace, started: datetime,
          loads: list[float]) -> str:
    """One row per endpoint of the API: medians, every round, ratio to its reference, and the baseline's."""
    def med(app: str, case: str, field: str = "rps") -> float:
        return float(np.median([r[field] for r in results[(app, case)]]))

    def rounds(app: str, case: str, per: int = 1) -> str:
        return ", ".join(f"{r['rps'] * per:,.0f}" for r in results[(app, case)])

    def outcomes(app: str, case: str) -> str:
        total = {name: sum(r.get(name, 0.0) for r in results[(app, case)])
                 for name in ("fallback", "answers:memo", "answers:shared", "answers:computed")}
        answers = ":".join(f"{total[f'answers:{o}']:,.0f}" for o in ("memo", "shared", "computed"))
        return f"{total['fallback']:,.0f} / {answers}"

    refs = {"constant": med("bare constant", "/healthz"), "one-GET": med("bare one-GET", "customer recommendations")}
    ref_cpu = {"constant": med("bare constant", "/healthz", "cpu_us"),
               "one-GET": med("bare one-GET", "customer recommendations", "cpu_us")}
    base = "Tailor baseline" if any(app == "Tailor baseline" for app, _ in results) else None
    command = ["python", "bench/api_bench.py", *sys.argv[1:]]
    lines = [f"Machine: {machine()}; {started:%Y-%m-%d %H:%M} UTC; `{' '.join(command)}`; wrk -t1 "
             f"-c{args.connections}, {args.duration} s per run after {args.warmup} s of warm-up, medians of "
             f"{args.reference} interleaved rounds; 1-minute load average {min(loads):.1f}-{max(loads):.1f} "
             "during the run.", "",
             f"References: bare constant view {refs['constant']:,.0f} req/s ({rounds('bare constant', '/healthz')}),"
             f" {ref_cpu['constant']:,.0f} CPU µs/req; bare one-GET view {refs['one-GET']:,.0f} req/s "
             f"({rounds('bare one-GET', 'customer recommendations')}), {ref_cpu['one-GET']:,.0f} CPU µs/req. "
             f"Their own p99 at half their maximum: constant {med('bare constant', '/healthz', 'p99'):.1f} ms, "
             f"one-GET {med('bare one-GET', 'customer recommendations', 'p99'):.1f} ms (the floor this machine "
             "sets for the p99 target). "
             "CPU ratio = the reference's CPU µs per request ÷ the endpoint's (server processes + Redis; what the "
             "req/s ratio would be on an otherwise idle machine saturated by the server).", "",
             "| endpoint | req/s (rounds) | ratio | target | CPU µs/req | CPU ratio | p99 ms at ½ max | non-2xx | "
             "fallbacks / answers memo:shared:computed |"
             + (" baseline req/s (rounds) | baseline ratio | baseline CPU µs/req | baseline p99 ms | this / baseline |"
                " baseline fallbacks / answers |"
                if base else ""),
             "|---|---|---:|---|---:|---:|---:|---:|---|" + ("---|---:|---:|---:|---:|---|" if base else "")]
    for case in [case for app, case in results if app == "Tailor"]:
        events = case.startswith("events")
        per = args.reference_batch if events else 1
        ref, least = TARGETS.get(case, ("", 0.0))
        apps = ["Tailor"] + ([base] if base else [])
        value = {app: med(app, case) * per for app in apps}
        ratio = {app: f"{value[app]:,.0f} events/s" if events else f"**{value[app] / refs[ref]:.2f}** of {ref}"
                 for app in apps}
        target = f"≥ {EVENTS_TARGET:,} events/s" if events else f"≥ {least} of {ref}"
        cpu_ratio = "–" if events else f"{ref_cpu[ref] / med('Tailor', case, 'cpu_us'):.2f}"
        row = (f"| {case} | {value['Tailor']:,.0f} ({rounds('Tailor', case, per)}) | {ratio['Tailor']} | {target}, "
               f"p99 ≤ 10 ms | {med('Tailor', case, 'cpu_us'):,.0f} | {cpu_ratio} | {med('Tailor', case, 'p99'):.1f} | "
               f"{int(sum(r['non2xx'] for r in results[('Tailor', case)]))} | {outcomes('Tailor', case)} |")
        if base:
            row += (f" {value[base]:,.0f} ({rounds(base, case, per)}) | {ratio[base]} | "
                    f"{med(base, case, 'cpu_us'):,.0f} | {med(base, case, 'p99'):.1f} | "
                    f"{value['Tailor'] / value[base]:.2f} | {outcomes(base, case)} |")
        lines.append(row)
    return "\n".join(lines)
