"""What counting the purchases since training costs audiences (``POST /v1/audiences``), against a private Redis.

    python bench/audience_live.py --model MODEL_DIR [--buyers 0,1000,10000] [--rounds 3]

Publishes the model into a private ``redis-server`` and, for each ``--buyers`` count, writes three purchases since
the model's data for that many customers (nine in ten known to the model, one in ten new), as the service writes
them (its own keys and value formats). Then, through the real app (``TAILOR_AUDIENCE_REFRESH_S=0``: the buyers
are read at every request) it times, per round:

* ``full read``: every recent buyer read (a new ``service.infrastructure.recent_buyers.RecentBuyers``: the
  ``SCAN`` of the live hashes, their lengths, then every one of them with its customer's record);
* ``refresh``: a read again with nothing new (the ``SCAN`` and the lengths only);
* ``cold``: an items audience of the most bought item right after one more purchase (a refresh reading that
  customer, the merge, and that customer scored again: the others' scores are carried over);
* ``warm``: the same audience again without a new purchase (a refresh and nothing else);
* ``due``: a re-order audience of any item after one more purchase.

And ``tailor audience --items ITEM --size 1000`` as a whole command, without and with ``--redis-url``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from bench.train_bench import machine  # noqa: E402
from redis_state import keys  # noqa: E402
from scoring.artifact import data_end_day, read_artifact  # noqa: E402
from service.domain.customer import live_value  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis  # noqa: E402
from service.infrastructure.recent_buyers import RecentBuyers  # noqa: E402
from service.usecases.audiences import MAX_CELLS  # noqa: E402
from training.publish import publish_model  # noqa: E402

KEY = "bench-key"


def write_buyers(client: redis.Redis, model_dir: Path, count: int) -> None:
    """Three purchases since the model's data for ``count`` customers, as the service writes them."""
    artifact = read_artifact(model_dir)
    rng = np.random.default_rng(7)
    known = [str(c) for c in rng.choice(artifact.customer_ids, min(len(artifact.customer_ids), count * 9 // 10),
                                        replace=False)]
    buyers = known + [f"new-{k}" for k in range(count - len(known))]
    day = data_end_day(artifact.manifest) + 1
    pipe = client.pipeline(transaction=False)
    for k, customer in enumerate(buyers):
        for j in range(3):
            item = str(artifact.item_ids[rng.integers(len(artifact.item_ids))])
            pipe.hset(keys.customer_live(customer), f"bench{k}-{j}", live_value(item, day + j, 1.0, None))
        if k % 1000 == 999:
            pipe.execute()
    pipe.execute()


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def cli(model_dir: Path, item: str, out: Path, *extra: str) -> float:
    return timed(lambda: subprocess.run(
        [sys.executable, "-m", "tailor.cli", "-q", "audience", "--model", str(model_dir), "--items", item,
         "--size", "1000", "--output", str(out), *extra], check=True, cwd=ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--buyers", default="0,1000,10000", help="comma-separated counts of customers with purchases")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from service import create_app

    artifact = read_artifact(args.model)
    item = str(artifact.item_ids[int(np.argmax(np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel()))])
    end = data_end_day(artifact.manifest)
    meta = artifact.items
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client = redis.Redis.from_url(server.url)
        version = publish_model(client, args.model)
        app = create_app({"REDIS_URL": server.url, "TAILOR_API_KEYS": f"{KEY}:marketing",
                          "TAILOR_AUDIENCE_REFRESH_S": 0, "TAILOR_REDIS_TIMEOUT_MS": 30_000})
        app.extensions["tailor"].store.start()
        http = app.test_client()
        headers = {"Authorization": f"Bearer {KEY}"}

        def post(body: dict) -> None:
            answer = http.post("/v1/audiences", json=body, headers=headers)
            assert answer.status_code == 200, answer.get_data(as_text=True)

        def one_more(k: int) -> None:
            answer = http.post("/v1/events", headers={**headers}, json={"events": [
                {"event_id": f"more-{k}", "customer_id": str(artifact.customer_ids[k]), "type": "purchase",
                 "item_id": item, "timestamp": datetime.fromtimestamp((end + 2) * 86_400, UTC).isoformat()}]})
            assert answer.status_code in (200, 202), answer.get_data(as_text=True)

        # The API refuses item audiences above MAX_CELLS scores (Ta Feng's catalogue): re-order audiences only.
        items_ok = len(artifact.customer_ids) * len(artifact.item_ids) <= MAX_CELLS
        target = {"items": [item], "size": 1000} if items_ok else {"due_for_reorder": True, "size": 1000}
        first = timed(lambda: post(target))
        written = 0
        seq = 0
        for count in [int(c) for c in args.buyers.split(",")]:
            for key in client.scan_iter(match=keys.CUSTOMER_LIVE_PATTERN, count=1000):
                client.delete(key)
            write_buyers(client, args.model, count)
            post(target)  # the app's own first read of these buyers, not timed: the rounds measure what follows
            written = count
            read, again, cold, warm, due = [], [], [], [], []
            for _ in range(args.rounds):
                buyers = RecentBuyers(0)
                read.append(timed(partial(buyers.get, client, version, artifact.item_index, meta, end)))
                again.append(timed(partial(buyers.get, client, version, artifact.item_index, meta, end)))
                seq += 1
                one_more(seq)
                if items_ok:
                    cold.append(timed(lambda: post(target)))
                    warm.append(timed(lambda: post(target)))
                seq += 1
                one_more(seq)
                due.append(timed(lambda: post({"due_for_reorder": True, "size": 1000})))
            plain = [cli(args.model, item, Path(tmp) / "a.csv") for _ in range(args.rounds)]
            live = [cli(args.model, item, Path(tmp) / "b.csv", "--redis-url", server.url) for _ in range(args.rounds)]
            rows.append((written, read, again, cold, warm, due, plain, live))
        app.extensions["tailor"].close()
        client.close()
    print(f"{machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `python bench/audience_live.py --model {args.model} "
          f"--buyers {args.buyers} --rounds {args.rounds}`; {len(artifact.customer_ids):,} customers, "
          f"{len(artifact.item_ids):,} items; the first {'items' if items_ok else 're-order'} audience (population "
          f"load and scoring) took {first:.2f} s"
          + ("" if items_ok else "; the API refuses item audiences of this size (more than MAX_CELLS scores), so "
             "their columns are empty") + "\n")
    print("| customers who bought since | full read (s) | refresh, nothing new (s) | items audience after a purchase "
          "(s) | same, no new purchase (s) | re-order audience after a purchase (s) | `tailor audience` (s) | with "
          "`--redis-url` (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for written, read, again, cold, warm, due, plain, live in rows:
        cells = [f"{median(v):.3f}" if v else "–" for v in (read, again, cold, warm, due)]
        cells += [f"{median(v):.2f}" for v in (plain, live)]
        print(f"| {written:,} | " + " | ".join(cells) + " |")
    print("\nMedians of the rounds.")


if __name__ == "__main__":
    main()
