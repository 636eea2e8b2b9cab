"""What the API answers while Redis stalls: customer recommendations under wrk, a trickle of events, and Redis
paused (``CLIENT PAUSE ... ALL``) for longer than the request-path read timeout once a second.

    python bench/redis_stall.py --model MODEL_DIR [--pause-ms 80 0] [--seconds 20] [--rounds 2] [--baseline DIR]

A read that times out closes its connection, and Redis forgets what a closed connection read, so the workers'
customer caches must drop what was read through it. How much they drop decides what a stall costs: every
customer dropped is read again from the stalled Redis, and a request whose read fails (or finds the circuit
breaker open) is answered from popularity. Reported per round and code: requests/s and p99 of
``GET /v1/customers/{id}/recommendations``, the event batches/s of the trickle (batches of 10, one client
every 20 ms), the share of customer reads answered from the caches (``tailor_customer_reads_total``) and the
share of answers that fell back to popularity (``tailor_fallback_answers_total``). ``--pause-ms 0`` is the
control run without stalls. ``--baseline DIR`` (a ``git worktree`` of another commit) is served the same way,
alternating with this checkout, against the same private Redis. Needs ``wrk`` and Linux.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import WRK, counters, parse_wrk, start  # noqa: E402
from bench.train_bench import machine  # noqa: E402
from service.app.runner import stop_server  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

TAILOR = [sys.executable, "-m", "tailor.cli", "--quiet"]


def pause_every_second(url: str, pause_ms: int, stop: threading.Event) -> None:
    """``CLIENT PAUSE pause_ms ALL`` once a second until ``stop``: every client of Redis waits that long."""
    client = redis.Redis.from_url(url)
    try:
        while not stop.wait(1.0):
            client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    finally:
        client.close()


def one_run(root: Path, redis_url: str, files: dict[str, Path], seconds: int, pause_ms: int) -> dict[str, float]:
    """Serve ``root``'s code, load it with reads and an event trickle for ``seconds`` while Redis pauses."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning",
           "PYTHONPATH": str(root)}
    server = start([*TAILOR, "serve", "--bind", f"127.0.0.1:{port}"], env, base, ready_path="/readyz", cwd=root)
    try:
        before = counters(base)
        wrk_env = {**os.environ, "TAILOR_BENCH_IDS": str(files["customers"]),
                   "TAILOR_BENCH_ITEMS": str(files["items"])}
        trickle = subprocess.Popen(
            ["wrk", "-t1", "-c1", f"-d{seconds}s", "-s", str(WRK / "events.lua"), base + "/"],
            stdout=subprocess.PIPE, text=True,
            env={**wrk_env, "TAILOR_BENCH_BATCH": "10", "TAILOR_BENCH_DELAY_MS": "20"})
        stop = threading.Event()
        pauser = None
        if pause_ms > 0:
            pauser = threading.Thread(target=pause_every_second, args=(redis_url, pause_ms, stop), daemon=True)
            pauser.start()
        reads = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(WRK / "customers.lua"), base + "/"],
            capture_output=True, text=True, check=True,
            env={**wrk_env, "TAILOR_BENCH_PATH": "/v1/customers/%s/recommendations?n=10"})
        stop.set()
        events = parse_wrk(trickle.communicate()[0])
        if pauser is not None:
            pauser.join()
        load = parse_wrk(reads.stdout)
        after = counters(base)
    finally:
        stop_server(server)
    cached, from_redis, fallbacks = (after.get(name, 0) - before.get(name, 0)
                                     for name in ("cache", "redis", "fallback"))
    return {"rps": load["rps"], "p99": load["p99"], "batches": events["rps"], "cached": cached,
            "from_redis": from_redis, "cache_share": cached / max(cached + from_redis, 1), "fallbacks": fallbacks,
            "fallback_share": fallbacks / max(load["rps"] * seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory (tailor train --out)")
    p.add_argument("--pause-ms", type=int, nargs="+", default=[80, 0],
                   help="Redis pause once a second, per run (0 = none; the read timeout is 50 ms)")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--baseline", help="another checkout served the same way, alternating with this one")
    args = p.parse_args()
    codes = [("this", ROOT)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else [])
    started = datetime.now(UTC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = {"customers": tmp / "customers.txt", "items": tmp / "items.txt"}
        model = Path(args.model)
        files["customers"].write_text("\n".join(np.load(model / "customer_ids.npy")) + "\n")
        files["items"].write_text("\n".join(np.load(model / "item_ids.npy")) + "\n")
        with EmbeddedRedis(tmp / "redis") as redis_server:
            subprocess.run([*TAILOR, "publish", "--model", str(model), "--redis-url", redis_server.url],
                           check=True, cwd=ROOT, env={**os.environ, "TAILOR_LOG_LEVEL": "warning"})
            for round_number in range(1, args.rounds + 1):
                for pause_ms in args.pause_ms:
                    for name, root in codes:
                        result = one_run(root, redis_server.url, files, args.seconds, pause_ms)
                        rows.append((round_number, name, pause_ms, result))
                        print(f"round {round_number} {name} pause {pause_ms} ms: {result}", file=sys.stderr)
    print(f"Machine: {machine()}; {started:%Y-%m-%d %H:%M} UTC; `python bench/redis_stall.py "
          f"{' '.join(sys.argv[1:])}`\n")
    print("| round | code | pause ms / s | req/s | p99 ms | event batches/s | reads from cache | from Redis | "
          "cache share | popularity fallbacks | of answers |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for round_number, name, pause_ms, r in rows:
        print(f"| {round_number} | {name} | {pause_ms} | {r['rps']:,.0f} | {r['p99']:.1f} | {r['batches']:.1f} | "
              f"{r['cached']:,.0f} | {r['from_redis']:,.0f} | {r['cache_share']:.1%} | {r['fallbacks']:,.0f} | "
              f"{r['fallback_share']:.1%} |")


if __name__ == "__main__":
    main()
