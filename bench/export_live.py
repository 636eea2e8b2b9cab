"""What ``tailor recommend --redis-url`` costs: the batch export with the service's events, against a private Redis.

    python bench/export_live.py --model MODEL_DIR [--with-events 1000] [--visitors 500] [--rounds 3]
        [--read-only 200000]

Writes purchases since training for ``--with-events`` of the model's customers (three each, on three days) and a
view for each of ``--visitors`` customers the model does not know, as the service writes them (its own value
formats and keys), into a private ``redis-server``. Then times the whole command (start-up and model load
included), ``tailor recommend --model M --customers ALL --n 10``, without and with ``--redis-url``, rounds
interleaved; and times ``tailor.served_state.live_rows`` in process over ``--read-only`` ids without events:
the cost of asking Redis which customers have events when few do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from bench.train_bench import machine  # noqa: E402
from redis_state import keys  # noqa: E402
from scoring.artifact import data_end_day, read_artifact  # noqa: E402
from service.domain.customer import live_value, session_value  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis  # noqa: E402
from tailor.served_state import live_rows  # noqa: E402


def write_events(client: redis.Redis, model_dir: Path, with_events: int, visitors: int) -> list[str]:
    """The events, written as the service writes them; returns every customer id to export (model's + visitors)."""
    artifact = read_artifact(model_dir)
    rng = np.random.default_rng(1)
    ids = [str(c) for c in artifact.customer_ids]
    day = data_end_day(artifact.manifest) + 1
    pipe = client.pipeline(transaction=False)
    for k, customer in enumerate(rng.choice(ids, min(with_events, len(ids)), replace=False)):
        for j in range(3):
            item = str(artifact.item_ids[rng.integers(len(artifact.item_ids))])
            pipe.hset(keys.customer_live(str(customer)), f"ev{k}-{j}", live_value(item, day + j, 1.0, None))
    visitor_ids = [f"visitor{k}" for k in range(visitors)]
    for visitor in visitor_ids:
        item = str(artifact.item_ids[rng.integers(len(artifact.item_ids))])
        pipe.hset(keys.customer_session(visitor), item, session_value(day, "view"))
    pipe.execute()
    return ids + visitor_ids


def timed_export(model_dir: Path, customers: Path, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tailor.cli", "-q", "recommend", "--model", str(model_dir), "--customers",
                    str(customers), "--n", "10", "--output", str(out), *extra], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--with-events", type=int, default=1000, help="model customers given purchases since training")
    p.add_argument("--visitors", type=int, default=500, help="unknown customers given a view")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--read-only", type=int, default=200_000, help="ids without events for the read-rate run")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client = redis.Redis.from_url(server.url)
        everyone = write_events(client, args.model, args.with_events, args.visitors)
        customers = Path(tmp) / "customers.txt"
        customers.write_text("\n".join(everyone) + "\n")
        plain, live = [], []
        for _ in range(args.rounds):
            plain.append(timed_export(args.model, customers, Path(tmp) / "a.csv"))
            live.append(timed_export(args.model, customers, Path(tmp) / "b.csv", "--redis-url", server.url))
        artifact = read_artifact(args.model)
        ids = [f"nobody-{k}" for k in range(args.read_only)]
        started = time.perf_counter()
        live_rows(artifact, client, ids, False, 50)
        rate = len(ids) / (time.perf_counter() - started)
        client.close()
    print(f"{machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `python bench/export_live.py --model {args.model} "
          f"--with-events {args.with_events} --visitors {args.visitors} --rounds {args.rounds} "
          f"--read-only {args.read_only}`\n")
    print(f"| export of {len(everyone):,} customers | seconds per round |\n|---|---|")
    print(f"| model directory alone | {', '.join(f'{t:.2f}' for t in plain)} |")
    print(f"| `--redis-url` ({min(args.with_events, len(everyone) - args.visitors):,} customers with purchases, "
          f"{args.visitors:,} visitors with a view) | {', '.join(f'{t:.2f}' for t in live)} |")
    print(f"\nReading {len(ids):,} customers without events: {rate:,.0f} customers/s")


if __name__ == "__main__":
    main()
