"""Simulation benchmark of the message-variant bandit, run through the real HTTP API.

    python bench/bandit_sim.py --data /work/shared/datasets/online-retail/online_retail.csv.gz \\
        --format online-retail [--decisions 50000] [--workers 2] [--concurrency 8] [--write]

What it does, all real: trains a model with ``tailor train`` (or takes ``--model DIR``), starts a private
redis-server (``service.infrastructure.embedded_redis``), publishes the model with ``tailor publish``, starts
the API with ``tailor serve`` (gunicorn), defines a message slot with four tone variants over HTTP, and then plays
simulated customers: each arrival is a ``GET /v1/customers/{id}/messages/{slot}``, and a click drawn from
the customer's true click probability for the variant shown is sent back as a ``click`` event with the
``decision_id`` (``POST /v1/events``, each client every 5 clicks or 0.5 s, as a shop frontend would).

The simulated world (fixed before any bandit setting was chosen, seeded):

* customers are the model's own customers (90% of arrivals, uniformly) plus first-time visitors the
  model has never seen (10%);
* a customer's taste follows their purchase history: k-means (k=3) over the model's customer embeddings
  gives three purchase-history segments whose members answer best to ``quality``, ``emotional`` and
  ``value`` respectively; the pull is soft - click probability 0.02 + 0.10 x the softmax (temperature
  1/20) of the customer's nearest-centroid scores - so customers between segments are less decided;
* lapsed customers (journey stage ``lapsed``) answer to ``urgency`` (0.12, every other tone 0.02);
  ``urgency`` does nothing for anyone else (0.02);
* first-time visitors click ``value`` at 0.08 and everything else at 0.03.

Reported at 5k, 20k and 50k decisions: cumulative reward (expected, i.e. the sum of the true click
probabilities of what was shown, and realised clicks) of the learned policy as served (including its
uniform exploration share), and on the same arrivals the expected reward of uniform random, of the best
single variant in hindsight and of the oracle; plus the reward rate over the 2,500 decisions before each
mark, and the off-policy (IPS) estimates of the slot report next to their simulated truth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from scipy.cluster.vq import kmeans2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bandit_report import TARGET_DECISIONS, markdown  # noqa: E402
from bench.train_bench import machine  # noqa: E402
from scoring.artifact import iso_to_day, read_artifact  # noqa: E402
from scoring.embeddings import customer_embedding  # noqa: E402
from service.domain.profile import StageRules, journey_stage  # noqa: E402
from service.infrastructure.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

TAILOR = [sys.executable, "-m", "tailor.cli"]
TONES = ("value", "quality", "emotional", "urgency")
SEGMENT_TONES = ("quality", "emotional", "value")  # tone of k-means segment 0, 1, 2
CHECKPOINTS = (5_000, TARGET_DECISIONS, 50_000)
WINDOW = 2_500
READ_KEY, MARKETING_KEY = "bench-read", "bench-marketing"
SLOT = "bench-banner"


# -- the simulated world -------------------------------------------------------------------------------
class World:
    """True click probabilities of every model customer (and of first-time visitors) for every tone."""

    def __init__(self, model_dir: Path, seed: int) -> None:
        artifact = read_artifact(model_dir)
        h, c = artifact.history, artifact.customers
        self.customer_ids = [str(x) for x in artifact.customer_ids]
        embeddings = np.stack([customer_embedding(artifact.item_embeddings, h.items_of(r), h.orders[r].data)
                               for r in range(h.shape[0])])
        centroids, self.segment = kmeans2(embeddings.astype(np.float64), 3, seed=seed, minit="++")
        scores = embeddings @ centroids.T - 0.5 * (centroids ** 2).sum(axis=1)
        pull = np.exp(20.0 * (scores - scores.max(axis=1, keepdims=True)))
        pull /= pull.sum(axis=1, keepdims=True)
        self.embedding = embeddings
        self.country = [c.countries[i] if i >= 0 else None for i in c.country.tolist()]
        self.orders = [int(x) for x in c.orders.tolist()]
        now_day = iso_to_day(artifact.manifest["data"]["last_timestamp"])  # the service's "data" clock
        rules = StageRules()
        self.stage = [journey_stage(int(c.orders[i]), float(c.last_day[i]), now_day, rules)
                      for i in range(len(c.orders))]
        self.p = np.full((len(self.customer_ids), len(TONES)), 0.02)
        for segment, tone in enumerate(SEGMENT_TONES):
            self.p[:, TONES.index(tone)] = 0.02 + 0.10 * pull[:, segment]
        lapsed = np.asarray([s == "lapsed" for s in self.stage])
        self.p[lapsed] = 0.02
        self.p[lapsed, TONES.index("urgency")] = 0.12
        self.visitor_p = np.asarray([0.08 if t == "value" else 0.03 for t in TONES])

    def probabilities(self, customer: int) -> np.ndarray:
        return self.visitor_p if customer < 0 else self.p[customer]

    def describe(self) -> dict[str, Any]:
        return {"customers": len(self.customer_ids),
                "segments": np.bincount(self.segment, minlength=3).tolist(),
                "stages": {s: self.stage.count(s) for s in sorted(set(self.stage))}}


# -- the real service ----------------------------------------------------------------------------------
def run_cli(args: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run([*TAILOR, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"tailor {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


@dataclass
class Service:
    base: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_service(redis_url: str, workers: int, workdir: Path) -> Service:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "TAILOR_LOG_LEVEL": "warning",
           "TAILOR_API_KEYS": f"{READ_KEY}:read,{MARKETING_KEY}:marketing"}
    log = workdir / "gunicorn.log"
    process = subprocess.Popen([*TAILOR, "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
                               cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"tailor serve exited; see {log}")
        try:
            if requests.get(f"{service.base}/readyz", timeout=2).status_code == 200:
                return service
        except requests.RequestException:
            pass
        time.sleep(0.2)
    service.stop()
    sys.exit(f"the API did not become ready; see {log}")


# -- the run -------------------------------------------------------------------------------------------
@dataclass
class Decision:
    index: int
    customer: int
    variant: int
    propensity: float
    explore: bool
    clicked: bool
    latency_ms: float


@dataclass
class Run:
    service: Service
    world: World
    arrivals: np.ndarray
    concurrency: int
    decisions: list[Decision | None] = field(default_factory=list)
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.decisions = [None] * len(self.arrivals)
        self._local = threading.local()
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["Authorization"] = f"Bearer {READ_KEY}"
            self._local.clicks = []
            self._local.flushed = time.monotonic()
        return s

    def flush(self) -> None:
        clicks = getattr(self._local, "clicks", [])
        if clicks:
            response = self.session().post(f"{self.service.base}/v1/events", json={"events": clicks}, timeout=30)
            response.raise_for_status()
            self._local.clicks = []
        self._local.flushed = time.monotonic()

    def decide(self, index: int) -> None:
        customer = int(self.arrivals[index])
        customer_id = f"visitor-{index}" if customer < 0 else self.world.customer_ids[customer]
        session = self.session()
        started = time.perf_counter()
        response = session.get(f"{self.service.base}/v1/customers/{customer_id}/messages/{SLOT}", timeout=30)
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            with self._lock:
                self.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{response.status_code} {response.text[:300]}")
            return
        answer = response.json()
        variant = TONES.index(answer["variant"]["id"])
        p = self.world.probabilities(customer)[variant]
        clicked = bool(np.random.default_rng([index, 1]).random() < p)
        self.decisions[index] = Decision(index, customer, variant, answer["propensity"],
                                         answer["policy"] == "explore", clicked, latency)
        if clicked:
            self._local.clicks.append({
                "event_id": str(uuid.uuid4()), "customer_id": customer_id, "type": "click",
                "timestamp": datetime.now(UTC).isoformat(), "decision_id": answer["decision_id"]})
        if len(self._local.clicks) >= 5 or (self._local.clicks and time.monotonic() - self._local.flushed > 0.5):
            self.flush()

    def phase(self, start: int, stop: int) -> float:
        """Decisions [start, stop) by ``concurrency`` clients; returns the wall seconds."""
        counter = iter(range(start, stop))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                self.decide(index)
            self.flush()

        began = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            for future in [pool.submit(worker) for _ in range(self.concurrency)]:
                future.result()
        return time.perf_counter() - began


def summarise(run: Run, marks: tuple[int, ...]) -> dict[str, Any]:
    world = run.world
    done = [d for d in run.decisions if d is not None]
    probs = np.stack([world.probabilities(d.customer) for d in done])
    chosen = probs[np.arange(len(done)), [d.variant for d in done]]
    clicks = np.asarray([d.clicked for d in done], dtype=float)
    explore = np.asarray([d.explore for d in done])
    arrived = np.cumsum([d is not None for d in run.decisions])  # answered decisions among the first k
    out: dict[str, Any] = {}
    for mark in marks:
        n = int(arrived[mark - 1])  # the mark counts arrivals; a failed request has no decision
        best_variant = int(np.argmax(probs[:n].sum(axis=0)))
        learned = float(chosen[:n].sum())
        row = {
            "decisions": mark, "answered": n,
            "learned_expected": learned, "learned_clicks": float(clicks[:n].sum()),
            "uniform": float(probs[:n].mean(axis=1).sum()),
            "best_single": float(probs[:n, best_variant].sum()), "best_single_variant": TONES[best_variant],
            "oracle": float(probs[:n].max(axis=1).sum()),
            "window_rate": float(chosen[max(0, n - WINDOW):n].mean()),
            "window_oracle_rate": float(probs[max(0, n - WINDOW):n].max(axis=1).mean()),
        }
        bandit = ~explore[:n]
        report = run.reports.get(mark, {}).get("off_policy", {})
        row["ips"] = {
            "learned_estimate": report.get("learned"), "uniform_estimate": report.get("uniform"),
            "learned_truth": float(chosen[:n][bandit].mean()) if bandit.any() else None,
            "uniform_truth": float(probs[:n].mean()),
        }
        out[str(mark)] = row
    latencies = np.asarray([d.latency_ms for d in done])
    out["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}
    return out


def sensitivity(world: World, arrivals: np.ndarray, redis_url: str, exploration: float,
                settings: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """The same world and arrivals against the domain layer in this process (no HTTP; real Redis, clicks
    fed back at once, statistics re-read every 250 decisions), for other posterior scales and priors."""
    import redis

    from service.domain.targeting import CustomerFacts
    from service.infrastructure.bandit_store import Bandit
    from service.infrastructure.message_board import MessageBoard

    client = redis.Redis.from_url(redis_url)
    rows = []
    clock = [0.0]
    for sigma, lam in settings:
        client.flushall()
        board = MessageBoard(Bandit(sigma=sigma, lam=lam, poll_s=0.5, clock=lambda: clock[0],
                                    rng=np.random.default_rng(3)), poll_s=0.5)
        board.put(client, SLOT, {"variants": [{"id": t, "content": t} for t in TONES],
                                 "exploration": exploration, "sticky_days": 0})
        slot = board.live_slot(client, SLOT)
        chosen, best = [], []
        for index, customer in enumerate(arrivals.tolist()):
            clock[0] = index / 500.0
            if customer < 0:
                facts = CustomerFacts(f"visitor-{index}", False, "new")
            else:
                facts = CustomerFacts(world.customer_ids[customer], True, world.stage[customer],
                                      world.country[customer], world.orders[customer], 0.0,
                                      world.embedding[customer])
            answer = board.decide(client, slot, facts, space="m", sticky_raw=None, values=lambda _: {})
            probs = world.probabilities(customer)
            p = probs[TONES.index(answer["variant"]["id"])]
            chosen.append(p)
            best.append(probs.max())
            if np.random.default_rng([index, 1]).random() < p:
                board.feedback(client, SLOT, answer["decision_id"], "click", facts.customer_id)
        n = len(chosen)
        rows.append({"sigma": sigma, "lambda": lam, "decisions": n,
                     "learned_over_oracle": float(np.sum(chosen) / np.sum(best)),
                     "window_over_oracle": float(np.mean(chosen[-WINDOW:]) / np.mean(best[-WINDOW:]))})
        print(f"sensitivity sigma={sigma} lambda={lam}: {rows[-1]}", file=sys.stderr)
    client.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a model directory to serve (default: train one from --data)")
    p.add_argument("--data", default="/work/shared/datasets/online-retail/online_retail.csv.gz")
    p.add_argument("--format", default="online-retail")
    p.add_argument("--decisions", type=int, default=CHECKPOINTS[-1])
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument("--exploration", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=str(ROOT / "var" / "bandit-bench"))
    p.add_argument("--write", action="store_true", help="write docs/BANDIT_BENCHMARK.md")
    p.add_argument("--sensitivity", action="store_true",
                   help="also run other posterior scales / priors in-process on the first 20k arrivals")
    args = p.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else workdir / "model"
    if not args.model:
        print(f"training on {args.data} ...", file=sys.stderr)
        run_cli(["-q", "train", "--data", args.data, "--format", args.format, "--no-eval", "--out", str(model_dir)])
    world = World(model_dir, args.seed)
    rng = np.random.default_rng(args.seed)
    arrivals = np.where(rng.random(args.decisions) < 0.1, -1, rng.integers(len(world.customer_ids),
                                                                            size=args.decisions))

    redis_server = EmbeddedRedis(workdir / "redis").start()
    service = None
    try:
        run_cli(["-q", "publish", "--model", str(model_dir), "--redis-url", redis_server.url])
        service = start_service(redis_server.url, args.workers, workdir)
        slot = {"variants": [{"id": t, "content": f"{t.title()} message for {{top_category|you}}", "tone": t}
                             for t in TONES], "exploration": args.exploration, "sticky_days": 0}
        response = requests.put(f"{service.base}/v1/messages/{SLOT}", json=slot, timeout=10,
                                headers={"Authorization": f"Bearer {MARKETING_KEY}"})
        response.raise_for_status()
        run = Run(service, world, arrivals, args.concurrency)
        marks = tuple(m for m in CHECKPOINTS if m <= args.decisions) or (args.decisions,)
        start, wall = 0, 0.0
        for mark in marks:
            wall += run.phase(start, mark)
            time.sleep(1.0)  # let every worker's cached bandit statistics catch up before reading the report
            run.reports[mark] = requests.get(f"{service.base}/v1/messages/{SLOT}/report", timeout=30, headers={
                "Authorization": f"Bearer {MARKETING_KEY}"}).json()
            print(f"{mark:,} decisions, {wall:.0f}s", file=sys.stderr)
            start = mark
        results = summarise(run, marks)
        redis_version = redis_server_version(redis_server.url)
        service.stop()
        rows = sensitivity(world, arrivals[:CHECKPOINTS[1]], redis_server.url, args.exploration,
                           [(0.3, 1.0), (0.3, 10.0), (0.15, 1.0), (0.15, 10.0)]) if args.sensitivity else []
    finally:
        if service is not None:
            service.stop()
        redis_server.stop()
    meta = {
        "machine": machine(), "date": date.today().isoformat(), "redis_version": redis_version,
        "command": "python bench/bandit_sim.py " + " ".join(sys.argv[1:]),
        "model_version": json.loads((model_dir / "manifest.json").read_text())["version"],
        "workers": args.workers, "concurrency": args.concurrency, "exploration": args.exploration,
        "world": world.describe(), "decisions_per_s": args.decisions / wall, "errors": run.errors,
        "error_samples": run.error_samples, "sensitivity": rows,
    }
    text = markdown(results, meta)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bandit_sim.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if args.write:
        (ROOT / "docs" / "BANDIT_BENCHMARK.md").write_text(text)


def redis_server_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


if __name__ == "__main__":
    main()
