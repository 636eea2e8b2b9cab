"""`tailor train --algorithm als` (implicit) vs `tailor train --engine spark` on the same log and cores, one after
the other in one run: wall time and peak memory per phase (issue 13).

    python bench/spark_speed.py [--data var/synth-10m.parquet] [--master local[2]] [--only implicit|spark]

Each command runs as a child with ``--no-eval --json``; its phases (read, matrix, fit, extras, write) come
from the JSON summary. Memory is sampled every 0.25 s over the whole process tree (the Python driver and,
with Spark, the JVM it launches, whose RSS ``/usr/bin/time`` would not see): peak RSS of the tree, of the
Python process and of the JVM, per phase (phases are placed on the time line from the end of the run
backwards, so start-up before the first phase - imports, the JVM - counts as phase "start").
``BLAS`` threads are whatever ``tailor`` sets; implicit uses all cores (2 here), Spark ``local[2]`` two
executor threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.train_bench import machine  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> dict[str, float]:
    """RSS in MB of ``root`` and its descendants: total, python processes, java processes."""
    parent: dict[int, int] = {}
    info: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1: stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            rss_pages = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError):
            continue
        parent[int(entry.name)] = int(fields[1])
        info[int(entry.name)] = (name, rss_pages * PAGE)
    tree = {root}
    grown = True
    while grown:
        children = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= children
        grown = bool(children)
    out = {"total": 0.0, "python": 0.0, "java": 0.0}
    for pid in tree:
        name, rss = info.get(pid, ("", 0))
        out["total"] += rss / 2**20
        if name.startswith("python"):
            out["python"] += rss / 2**20
        elif name == "java":
            out["java"] += rss / 2**20
    return out


def measure(cmd: list[str]) -> dict:
    samples: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic() - started, tree_rss(proc.pid)))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    summary = json.loads(out)
    bounds, end = [], wall
    for phase in reversed(summary["phases"]):
        bounds.append((phase["phase"], end - phase["seconds"], end, phase["seconds"]))
        end -= phase["seconds"]
    bounds.append(("start", 0.0, end, end))
    phases = []
    for name, lo, hi, seconds in reversed(bounds):
        inside = [s for t, s in samples if lo <= t <= hi] or [min(samples, key=lambda ts: abs(ts[0] - hi))[1]]
        phases.append({"phase": name, "seconds": round(seconds, 2),
                       **{f"peak_{k}_mb": round(max(s[k] for s in inside)) for k in ("total", "python", "java")}})
    return {"command": " ".join(cmd), "wall_s": round(wall, 1), "phases": phases,
            "peak_total_mb": round(max(s["total"] for _, s in samples)),
            "engine": summary.get("params", {}), "algorithm": summary["algorithm"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT / "var" / "synth-10m.parquet"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--out", default=str(ROOT / "var" / "speed"))
    p.add_argument("--only", choices=("implicit", "spark"), help="run one engine only")
    args = p.parse_args()
    tailor = [sys.executable, "-m", "tailor.cli", "-q", "train", "--data", args.data, "--no-eval", "--json",
              "--force", "--algorithm", "als"]
    report = {"machine": machine(), "date": date.today().isoformat(), "loadavg_start": os.getloadavg(),
              "runs": []}
    if args.only != "spark":
        report["runs"].append(measure([*tailor, "--out", f"{args.out}-implicit"]))
        print(json.dumps(report["runs"][-1]), file=sys.stderr)
        report["loadavg_between"] = os.getloadavg()
    if args.only != "implicit":
        report["runs"].append(measure([*tailor, "--engine", "spark", "--spark-master", args.master,
                                       "--out", f"{args.out}-spark"]))
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
