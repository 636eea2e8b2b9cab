"""One Redis node vs a local Redis Cluster: publish (wall time, memory and keys per primary) and customer
recommendation throughput under gunicorn, both measured in the same run (numbers of docs/SCALING.md, issue 13).

    python bench/cluster_bench.py --model MODEL_DIR [--primaries 3] [--duration 10] [--rounds 2]
        [--workers N] [--connections 16]

1. Starts an ``EmbeddedRedis`` and an ``EmbeddedCluster`` of ``--primaries`` primaries (private redis-server
   processes on free loopback ports), times ``tailor -q publish --model MODEL_DIR`` into each
   (``TAILOR_REDIS_CLUSTER=true`` for the cluster) and reads ``INFO memory`` ``used_memory`` (minus the empty
   server's) and ``DBSIZE`` of every primary.
2. For ``--rounds`` rounds, alternately single node then cluster: ``tailor serve`` with the same gunicorn
   settings (``--workers``; ``TAILOR_CUSTOMER_CACHE_SIZE=0`` and ``TAILOR_ANSWER_CACHE_SIZE=0`` on both, since
   cluster mode has no customer cache: every request is scored after one Lua read from the customer's
   primary), ``wrk`` on ``/healthz`` and on ``GET /v1/customers/ID/recommendations?n=10`` with ids drawn at
   random from all customers of the model (``bench/wrk/customers.lua``). Reports req/s and the cluster /
   single-node ratio per round and of the medians.
Needs ``wrk`` and ``redis-cli`` (cluster creation). Linux only (``/proc`` for the CPU column).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import WRK, cpu_seconds, start, wrk  # noqa: E402
from bench.train_bench import machine  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedCluster, EmbeddedRedis, free_port  # noqa: E402

TAILOR = [sys.executable, "-m", "tailor.cli", "--quiet"]


def node_stats(ports: list[int]) -> list[dict[str, int]]:
    out = []
    for port in ports:
        with redis.Redis(port=port) as client:
            out.append({"port": port, "used_memory": int(client.info("memory")["used_memory"]),
                        "keys": int(client.dbsize())})
    return out


def publish(model: str, url: str, ports: list[int], cluster: bool) -> dict:
    before = node_stats(ports)
    env = {**os.environ, "TAILOR_REDIS_CLUSTER": "true" if cluster else "false"}
    started = time.perf_counter()
    subprocess.run([*TAILOR, "publish", "--model", model, "--redis-url", url], check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    after = node_stats(ports)
    nodes = [{"port": a["port"], "keys": a["keys"],
              "used_memory_added_mb": round((a["used_memory"] - b["used_memory"]) / 2**20, 1)}
             for a, b in zip(after, before, strict=True)]
    return {"publish_s": round(wall, 2), "nodes": nodes, "keys": sum(n["keys"] for n in nodes),
            "used_memory_added_mb": round(sum(n["used_memory_added_mb"] for n in nodes), 1)}


def serve(url: str, cluster: bool, workers: int | None, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": url, "TAILOR_REDIS_CLUSTER": "true" if cluster else "false",
           "TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": "warning", "TAILOR_ACCESS_LOG": "false",
           "TAILOR_CUSTOMER_CACHE_SIZE": "0", "TAILOR_ANSWER_CACHE_SIZE": "0"}
    cmd = [*TAILOR, "serve", "--bind", f"127.0.0.1:{port}"]
    if workers:
        cmd += ["--workers", str(workers)]
    log = open(log_dir / f"serve-{'cluster' if cluster else 'single'}-{port}.log", "w")  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    return start(cmd, env, base, ready_path="/readyz", log=log, timeout_s=180), base


def throughput(base: str, customers: Path, pids: list[int], duration: int, connections: int) -> dict:
    env = {"TAILOR_BENCH_IDS": str(customers), "TAILOR_BENCH_PATH": "/v1/customers/%s/recommendations?n=10"}
    wrk(f"{base}/healthz", None, 2, connections, {})
    wrk(base + "/", WRK / "customers.lua", 3, connections, env)  # warm-up: every worker has loaded the model
    health = wrk(f"{base}/healthz", None, duration, connections, {})
    cpu = cpu_seconds(pids)
    recs = wrk(base + "/", WRK / "customers.lua", duration, connections, env)
    cpu = cpu_seconds(pids) - cpu
    return {"healthz_rps": round(health["rps"]), "customer_rps": round(recs["rps"]),
            "p50_ms": recs["p50"], "p99_ms": recs["p99"], "non2xx": int(recs["non2xx"]),
            "socket_errors": recs["socket_errors"],
            "cpu_us_per_request": round(1e6 * cpu / max(recs["rps"] * duration, 1))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a model directory written by `tailor train --out`")
    p.add_argument("--primaries", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=2, help="single/cluster throughput pairs, interleaved")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: tailor serve's)")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    load_before = os.getloadavg()
    report: dict = {"machine": machine(), "date": date.today().isoformat(), "loadavg_start": load_before,
                    "command": " ".join(["python", "bench/cluster_bench.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        customers = tmp / "customers.txt"
        customers.write_text("\n".join(np.load(Path(args.model) / "customer_ids.npy")) + "\n")
        with EmbeddedRedis(tmp / "single") as single, EmbeddedCluster(tmp / "cluster", args.primaries) as cluster:
            cluster_ports = [n.port for n in cluster.nodes]
            report["publish_single"] = publish(args.model, single.url, [single.port], cluster=False)
            print(json.dumps({"publish_single": report["publish_single"]}), file=sys.stderr)
            report["publish_cluster"] = publish(args.model, cluster.url, cluster_ports, cluster=True)
            print(json.dumps({"publish_cluster": report["publish_cluster"]}), file=sys.stderr)
            if not args.skip_throughput:
                rounds = []
                for _ in range(args.rounds):
                    row = {}
                    for name, url, pids, is_cluster in (
                            ("single", single.url, [single.process.pid], False),
                            ("cluster", cluster.url, [n.process.pid for n in cluster.nodes], True)):
                        server, base = serve(url, is_cluster, args.workers, tmp)
                        try:
                            row[name] = throughput(base, customers, [server.pid, *pids], args.duration,
                                                   args.connections)
                        finally:
                            server.terminate()
                            server.wait(timeout=60)
                        print(json.dumps({name: row[name]}), file=sys.stderr)
                    row["ratio"] = round(row["cluster"]["customer_rps"] / row["single"]["customer_rps"], 3)
                    rounds.append(row)
                report["rounds"] = rounds
                report["median_ratio"] = round(statistics.median(r["ratio"] for r in rounds), 3)
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
