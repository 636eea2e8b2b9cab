"""Training benchmark: wall time and peak memory per phase of `tailor train`, plus the reference runs.

    python bench/train_bench.py --data ../shared/datasets/online-retail/online_retail.csv.gz [--synthetic]

Runs, each as a separate process so peak RSS is per run:
  1. `tailor train` with the default algorithm, evaluation included (target <= 20 s);
  2. `tailor train --algorithm als --no-eval` vs `bench/bare_als.py` with the same parameters (target <= 1.5x);
  3. with --synthetic: `tailor train --no-eval` on 10M synthetic interactions (target <= 3 min, <= 4 GB);
  4. `tailor recommend` for every customer of the file (rows per second).
Prints a Markdown report for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAILOR = [sys.executable, "-m", "tailor.cli"]


def run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the child and its stdout."""
    wrapped = ["/usr/bin/time", "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd
    start = time.perf_counter()
    proc = subprocess.run(wrapped, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    peak = float(proc.stderr.strip().splitlines()[-1]) / 1024 if wrapped is not cmd else float("nan")
    return wall, peak, proc.stdout


def phases_table(summary: dict) -> str:
    rows = ["| phase | wall s | peak RSS MB |", "|---|---:|---:|"]
    rows += [f"| {p['phase']} | {p['seconds']:.2f} | {p['peak_rss_mb']:.0f} |" for p in summary["phases"]]
    return "\n".join(rows)


def machine() -> str:
    """Cores, CPU model, RAM and Python: the line every benchmark report starts with."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB RAM, Linux, Python {platform.python_version()}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared/datasets/online-retail/online_retail.csv.gz"))
    p.add_argument("--synthetic", action="store_true", help="also run the 10M-interaction synthetic log")
    p.add_argument("--synthetic-file", default=str(ROOT / "var" / "synth-10m.parquet"))
    args = p.parse_args()
    out: list[str] = [f"Machine: {machine()}; date {date.today().isoformat()}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        cmd = [*TAILOR, "--quiet", "train", "--data", args.data, "--format", "online-retail", "--json",
               "--out", str(model_dir)]
        wall, peak, stdout = run(cmd)
        summary = json.loads(stdout)
        out += [f"### Full Online Retail file, default algorithm ({summary['algorithm']}), with evaluation",
                f"`tailor train --data online_retail.csv.gz --format online-retail --out DIR`: "
                f"**{wall:.1f} s** wall, peak RSS {peak:.0f} MB (target <= 20 s)", "", phases_table(summary), ""]

        als = ["--algorithm", "als", "--factors", "64", "--iterations", "15", "--regularization", "0.01"]
        pairs = []
        for _ in range(3):  # interleaved, median ratio: the machine is shared and noisy
            wall_als, peak_als, _ = run([*TAILOR, "--quiet", "train", "--data", args.data, "--format",
                                         "online-retail", *als, "--no-eval", "--out", str(Path(tmp) / "als")])
            wall_bare, peak_bare, bare_out = run([sys.executable, "bench/bare_als.py", args.data, "--factors", "64",
                                                  "--iterations", "15", "--regularization", "0.01"])
            pairs.append((wall_als / wall_bare, wall_als, peak_als, wall_bare, peak_bare, bare_out.strip()))
        pairs.sort()
        ratio, wall_als, peak_als, wall_bare, peak_bare, bare_out = pairs[1]
        out += ["### `--algorithm als --no-eval` vs a bare pandas + scipy + implicit script",
                "| command | wall s | peak RSS MB |", "|---|---:|---:|",
                f"| `tailor train --algorithm als --factors 64 --iterations 15 --no-eval` | {wall_als:.2f} | "
                f"{peak_als:.0f} |",
                f"| `python bench/bare_als.py` ({bare_out}) | {wall_bare:.2f} | {peak_bare:.0f} |",
                "", f"Ratio (median of 3 interleaved pairs; all: {', '.join(f'{p[0]:.2f}' for p in pairs)}): "
                f"**{ratio:.2f}x** (target <= 1.5x)", ""]

        ids = Path(tmp) / "customers.txt"
        import numpy as np

        ids.write_text("\n".join(np.load(model_dir / "customer_ids.npy")) + "\n")
        wall_rec, peak_rec, _ = run([*TAILOR, "--quiet", "recommend", "--model", str(model_dir), "--customers",
                                     str(ids), "--n", "10", "--output", str(Path(tmp) / "recs.csv")])
        with open(Path(tmp) / "recs.csv") as fh:
            n_rows = sum(1 for _ in fh) - 1
        out += ["### Batch export for every customer",
                f"`tailor recommend --n 10` for {len(ids.read_text().split()):,} customers: {n_rows:,} rows in "
                f"{wall_rec:.2f} s = **{n_rows / wall_rec:,.0f} rows/s** (whole command incl. start-up and "
                f"model load), peak RSS {peak_rec:.0f} MB", ""]

        if args.synthetic:
            synth = Path(args.synthetic_file)
            if not synth.exists():
                synth.parent.mkdir(parents=True, exist_ok=True)
                run([sys.executable, "bench/synth.py", "--out", str(synth)])
            wall_s, peak_s, stdout = run([*TAILOR, "--quiet", "train", "--data", str(synth), "--no-eval",
                                          "--json", "--out", str(Path(tmp) / "synth")])
            summary = json.loads(stdout)
            fit_phases = {p["phase"]: p for p in summary["phases"]}
            read_to_fit = sum(fit_phases[k]["seconds"] for k in ("read", "matrix", "fit") if k in fit_phases)
            out += [f"### Synthetic: 10M interactions, 1M customers, 100k items ({summary['algorithm']})",
                    f"`tailor train --data synth-10m.parquet --no-eval --out DIR`: read+matrix+fit "
                    f"**{read_to_fit:.1f} s**, whole command {wall_s:.1f} s, peak RSS **{peak_s:.0f} MB** "
                    f"(targets <= 180 s, <= 4096 MB)", "", phases_table(summary), ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
