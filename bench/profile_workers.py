"""Where a request's CPU goes under gunicorn: py-spy on every worker of a running server under wrk load.

    python bench/profile_workers.py --pid GUNICORN_MASTER_PID --url http://127.0.0.1:PORT/healthz
    TAILOR_BENCH_IDS=customers.txt python bench/profile_workers.py --pid PID --url http://127.0.0.1:PORT/ \
        --script bench/wrk/customers.lua [--seconds 15] [--rate 200]

Samples only the thread holding the GIL (``py-spy record --gil``), so the shares are of the Python CPU time
of request handling (gunicorn parsing and writing included), not of waiting. Each sample is put in the first
matching group below (the app's own layers first, then the innermost of Flask/Werkzeug or gunicorn); the
table gives each group's share and the GIL-held milliseconds per request (samples / rate / requests served
while sampling). Needs py-spy (the ``dev`` extra) and permission to ptrace the workers (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import parse_wrk  # noqa: E402

#: (group, frame substrings): the app's layers, matched anywhere in the stack, first group wins.
GROUPS = [
    ("gunicorn access line (built, then dropped)", ["Logger.access (gunicorn"]),
    ("observer before: t0 + request id", ["RequestObserver.before"]),
    ("observer after: metrics (prometheus mmap)", ["Counter.inc", "Histogram.observe"]),
    ("observer after: access log + rest", ["RequestObserver.after"]),
    ("customer read (worker cache or EVALSHA)", ["Repository.customer_read"]),
    ("scoring + reasons (memo miss)", ["Engine._customer_answer", "Engine._basket_answer", "Engine._similar_answer"]),
    ("answer memo lookup/store", ["AnswerMemo"]),
    ("engine, other (filters, keys, shared answer store, metrics)",
     ["Engine.for_customer", "Engine.similar", "Engine.for_basket", "Engine.rank_items"]),
    ("auth (API key check)", ["authorize (service"]),
    ("argument parsing (webargs + memo)", ["TailorParser.parse", "Parser.parse (webargs", "Parser._parse"]),
    ("view + JSON response object", ["json_response", "healthz (service", "constant_view", "jsonify"]),
    ("flask-smorest/webargs wrappers (self)",
     ["ResponseMixin.response", "ArgumentsMixin.arguments", "Parser.use_args", "Blueprint.requires"]),
]
#: Matched from the innermost frame outwards: the layer a sample's time is spent in itself.
INNERMOST = [("limits middleware (self)", ["LimitsMiddleware"]),
             ("Flask + Werkzeug core (context, routing, hooks, headers)", ["(flask/", "(werkzeug/"]),
             ("gunicorn: parse request, write response", ["(gunicorn/"])]


def group_of(frames: list[str]) -> str:
    for name, patterns in GROUPS:
        if any(p in frame for frame in frames for p in patterns):
            return name
    for frame in reversed(frames):
        for name, patterns in INNERMOST:
            if any(p in frame for p in patterns):
                return name
    return "other"


def shares(folded: list[Path]) -> tuple[Counter[str], int]:
    """Samples per group of the request-handling threads (py-spy's raw folded stacks)."""
    counts: Counter[str] = Counter()
    total = 0
    for path in folded:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            if not n.isdigit() or not any(f.startswith("ThreadWorker.handle ") for f in frames):
                continue
            counts[group_of(frames)] += int(n)
            total += int(n)
    return counts, total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True, help="the gunicorn master's pid")
    p.add_argument("--url", required=True)
    p.add_argument("--script", help="a wrk Lua script (bench/wrk/*.lua)")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args()
    workers = subprocess.run(["pgrep", "-P", str(args.pid)], capture_output=True, text=True).stdout.split()
    load = ["wrk", "-t1", f"-c{args.connections}", "--latency"] + (["-s", args.script] if args.script else [])
    subprocess.run([*load, "-d3s", args.url], capture_output=True, check=True)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        wrk = subprocess.Popen([*load, f"-d{args.seconds + 6}s", args.url], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        out = [Path(tmp) / f"{pid}.txt" for pid in workers]
        spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spies = [subprocess.Popen([spy_bin, "record", "-p", pid, "-d", str(args.seconds), "-r", str(args.rate),
                                   "--gil", "--nonblocking", "-f", "raw", "-o", str(path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid, path in zip(workers, out, strict=True)]
        for spy in spies:
            spy.wait()
        rps = parse_wrk(wrk.communicate()[0])["rps"]
        counts, total = shares([path for path in out if path.exists()])
    print(f"{args.url} {args.script or ''}: {rps:,.0f} req/s under py-spy, {total} samples, "
          f"{1000 * total / args.rate / max(rps * args.seconds, 1):.2f} GIL-held ms per request\n")
    print("| where | share |\n|---|---:|")
    for name, _ in [*GROUPS, *INNERMOST, ("other", [])]:
        if counts[name]:
            print(f"| {name} | {100 * counts[name] / total:.1f}% |")


if __name__ == "__main__":
    main()
