"""Soak test of the exactly-once event write path: real gunicorn, a Redis killed with kill -9 and restarted.

    python bench/soak_events.py [--seconds 60] [--threads 4] [--batch 10] [--kill-every 4] [--down 0.5]
        [--appendfsync always|everysec]

Starts a private ``redis-server --appendonly yes --appendfsync always`` (as shipped; ``everysec`` to see
what Redis' cheaper setting risks) and ``tailor serve`` (gunicorn, 2 workers) on free ports.
``--threads`` clients post batches of ``--batch`` events with fresh ids and send a batch again, with the
same ids, until it is answered 2xx (any non-2xx answer or connection error counts as not acknowledged).
Every ``--kill-every`` seconds Redis gets SIGKILL and is restarted ``--down`` seconds later on the same
port and data directory (the AOF brings the data back). At the end the stream is compared with what was
acknowledged: prints sent, acknowledged, missing (acknowledged but not in the stream) and duplicated
(stream entries beyond the first of an event) as one JSON line. Exit status 1 if missing or duplicated.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis_state import keys  # noqa: E402
from service.app.runner import stop_server  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

KEY = "soak-key-0123456789"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--kill-every", type=float, default=4.0)
    p.add_argument("--down", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--appendfsync", choices=["always", "everysec"], default="always")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tailor-soak-"))
    server = EmbeddedRedis(work / "redis", persist=True)
    server.extra_args = ["--appendfsync", args.appendfsync]
    server.start()
    port = free_port()
    env = {**os.environ, "REDIS_URL": server.url, "TAILOR_API_KEYS": f"{KEY}:read", "TAILOR_LOG_LEVEL": "warning",
           "TAILOR_EVENTS_MAXLEN": "100000000", "TAILOR_BREAKER_RESET_S": "0.2", "PYTHONPATH": str(ROOT)}
    log = (work / "gunicorn.log").open("w")
    api = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--bind", f"127.0.0.1:{port}",
                            "--workers", str(args.workers)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("tailor serve did not start")
        time.sleep(0.2)

    ids = itertools.count()
    lock = threading.Lock()
    sent: set[tuple[str, str]] = set()
    acked: set[tuple[str, str]] = set()
    stats = Counter()
    stop = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {KEY}"}
        while not stop.is_set():
            batch = []
            for _ in range(args.batch):
                i = next(ids)
                batch.append({"event_id": f"e{i}", "customer_id": f"c{i % 997}", "timestamp": "2011-12-09T10:00:00Z",
                              "type": ("purchase", "view", "click", "impression")[i % 4], "item_id": f"i{i % 50}"})
            with lock:
                sent.update((e["customer_id"], e["event_id"]) for e in batch)
            while True:  # until acknowledged, same ids (even after the soak's end: no batch is abandoned)
                try:
                    response = session.post(f"{base}/v1/events", json=batch, headers=headers, timeout=10)
                    status = response.status_code
                except requests.RequestException:
                    status = 0
                with lock:
                    stats[f"answers_{status}"] += 1
                if 200 <= status < 300:
                    with lock:
                        acked.update((e["customer_id"], e["event_id"]) for e in batch)
                    break
                time.sleep(0.05)

    def killer() -> None:
        while not stop.wait(args.kill_every):
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            stats["redis_kills"] += 1
            time.sleep(args.down)
            server.start()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.threads)]
    kill_thread = threading.Thread(target=killer)
    started = time.monotonic()
    for thread in [*threads, kill_thread]:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    kill_thread.join()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started

    client_ = redis.Redis.from_url(server.url)
    counts: Counter = Counter()
    last = "-"
    while True:
        chunk = client_.xrange(keys.EVENTS_STREAM, min=last, max="+", count=10_000)
        if last != "-":
            chunk = chunk[1:]
        if not chunk:
            break
        for _entry_id, fields in chunk:
            counts[(fields[b"customer_id"].decode(), fields[b"event_id"].decode())] += 1
        last = chunk[-1][0].decode()
    missing = sum(1 for pair in acked if counts[pair] == 0)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    result = {"seconds": round(elapsed, 1), "appendfsync": args.appendfsync, "threads": args.threads,
              "batch": args.batch,
              "redis_kills": stats["redis_kills"], "sent": len(sent), "acknowledged": len(acked),
              "missing": missing, "duplicated": duplicated, "stream_entries": sum(counts.values()),
              "unacknowledged_in_stream": sum(1 for pair in counts if pair not in acked),
              "answers": {k[8:]: v for k, v in sorted(stats.items()) if k.startswith("answers_")}}
    print(json.dumps(result))
    stop_server(api)
    server.stop()
    log.close()
    return 1 if missing or duplicated else 0


if __name__ == "__main__":
    raise SystemExit(main())
