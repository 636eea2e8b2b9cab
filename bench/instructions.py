"""Instructions per request, in process, counted by valgrind's callgrind: a figure that does not move with
the load of a shared machine, where two timing runs of the same code can differ by 30%.

    python bench/instructions.py --model MODEL_DIR [--endpoint rank] [--requests 500] [--items 20]
        [--baseline DIR]

Builds the app with ``create_app`` against a private Redis holding MODEL_DIR, reads a fixed sample of
customers once (as a long-running worker has), then drives ``--requests`` requests of one endpoint through
its WSGI callable. The run is done twice under ``valgrind --tool=callgrind``, with 0 and with ``--requests``
requests and otherwise the same steps, so the difference divided by ``--requests`` is the cost of one
request (the app's Python, numpy and the Redis client; not the Redis server, not gunicorn). With
``--baseline DIR`` (another checkout, e.g. ``git worktree add DIR COMMIT``) the same is counted with that
checkout's code. Needs valgrind (Debian package ``valgrind``); each run takes a minute or two.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.wsgi_requests import call, environ, requests_for  # noqa: E402

ENDPOINTS = ("healthz", "customer", "similar", "basket", "rank")


def run_requests(root: str, model_dir: str, endpoint: str, n: int, page_size: int) -> None:
    """The measured program: the app of checkout ``root``, a warm-up, then ``n`` requests."""
    sys.path.insert(0, root)  # before any Tailor import: the code measured is that checkout's
    from redis_state.versions import connect
    from service import create_app
    from service.infrastructure.embedded_redis import EmbeddedRedis
    from training.publish import publish_model

    model = Path(model_dir)
    customers = np.load(model / "customer_ids.npy")[::15]  # every one read once below, as in a long-running worker
    items = np.load(model / "item_ids.npy")
    make = requests_for(endpoint, customers, items, np.random.default_rng(0), page_size=page_size)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        publish_model(connect(server.url), model)
        app = create_app({"REDIS_URL": server.url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"})
        for customer in customers.tolist():
            call(app, environ("POST", f"/v1/customers/{customer}/rank",
                              body=json.dumps({"items": [str(items[0])]}).encode()))
        call(app, make())
        envs = [make() for _ in range(n)]  # built before the loop in both runs: same steps, same numbers
        gc.collect()  # no collector in the loop: when its collections fall depends on how many objects
        gc.disable()  # the checkout made at start, which moved the counts of unchanged code by up to 8%
        for env in envs:
            call(app, env)


def count(root: Path, args: argparse.Namespace, n: int) -> int:
    """Instructions of one whole run of ``run_requests`` under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--run", str(root), "--model", args.model, "--endpoint", args.endpoint, "--items", str(args.items),
               "--requests", str(n)]
    # one BLAS / OpenMP thread, as in every gunicorn worker (service.gunicorn_conf)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"callgrind run failed ({root}, {n} requests):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory (`tailor train ... --out DIR`)")
    p.add_argument("--endpoint", choices=ENDPOINTS, default="rank")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--items", type=int, default=20, help="items per rank page")
    p.add_argument("--baseline", help="another checkout to count with the same requests")
    p.add_argument("--run", help=argparse.SUPPRESS)  # internal: the measured program, with this checkout root
    args = p.parse_args()
    if args.run:
        run_requests(args.run, args.model, args.endpoint, args.requests, args.items)
        return
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `python bench/instructions.py {' '.join(sys.argv[1:])}`")
    print("| checkout | instructions per request |\n|---|---:|")
    for name, root in [("this", ROOT)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else []):
        per_request = (count(root, args, args.requests) - count(root, args, 0)) / args.requests
        print(f"| {name} ({root}) | {per_request:,.0f} |")


if __name__ == "__main__":
    main()
