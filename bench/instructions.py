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
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("healthz", "customer", "similar", "basket", "rank")


def run_requests(root: str, model_dir: str, endpoint: str, n: int, items_per_page: int) -> None:
    """The measured program: the app of checkout ``root``, a warm-up, then ``n`` requests."""
    sys.path.insert(0, root)
    import io

    import numpy as np

    from redis_state.versions import connect
    from service import create_app
    from service.infrastructure.embedded_redis import EmbeddedRedis
    from training.publish import publish_model

    def environ(method: str, path: str, query: str = "", body: bytes = b"") -> dict:
        return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "bench",
                "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                "CONTENT_TYPE": "application/json" if body else "", "wsgi.errors": sys.stderr,
                "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}

    def call(app, env: dict) -> None:
        status: list[str] = []
        body = b"".join(app(env, lambda s, h, exc_info=None: status.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"{env['PATH_INFO']}: {status[0]} {body[:300]!r}")

    model = Path(model_dir)
    customers = np.load(model / "customer_ids.npy")[::15].tolist()  # every customer read once below
    items = np.load(model / "item_ids.npy").tolist()
    rng = np.random.default_rng(0)

    def request() -> dict:
        customer, item = customers[rng.integers(len(customers))], items[rng.integers(len(items))]
        if endpoint == "healthz":
            return environ("GET", "/healthz")
        if endpoint == "customer":
            return environ("GET", f"/v1/customers/{customer}/recommendations", "n=10")
        if endpoint == "similar":
            return environ("GET", f"/v1/items/{item}/similar", "n=10")
        page = [items[k] for k in rng.choice(len(items), items_per_page, replace=False)]
        if endpoint == "basket":
            return environ("POST", "/v1/recommendations", body=json.dumps({"items": page[:3], "n": 10}).encode())
        return environ("POST", f"/v1/customers/{customer}/rank", body=json.dumps({"items": page}).encode())

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        publish_model(connect(server.url), model)
        app = create_app({"REDIS_URL": server.url, "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning"})
        for customer in customers:
            call(app, environ("POST", f"/v1/customers/{customer}/rank", body=json.dumps({"items": items[:1]}).encode()))
        call(app, request())
        envs = [request() for _ in range(n)]  # built before the loop in both runs: same steps, same numbers
        for env in envs:
            call(app, env)


def count(root: Path, args: argparse.Namespace, n: int) -> int:
    """Instructions of one whole run of ``run_requests`` under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--run", str(root), "--model", args.model, "--endpoint", args.endpoint, "--items", str(args.items),
               "--requests", str(n)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
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
