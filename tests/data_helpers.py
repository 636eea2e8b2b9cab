"""What the purchase-log tests share: a file written from text, a small generic log, the Online Retail header,
the report's counters, and a model directory as the code before first purchase days per item wrote it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from training.data import DataQualityReport

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"

GENERIC = """customer_id,item_id,timestamp,quantity,price,title,category,country
c1,A,2024-01-01T10:00:00,2,1.50,Apple,fruit,UK
c1,B,2024-01-01T10:00:00,1,,Banana,fruit,UK
c2,A,2024-01-02 09:30,3,1.70,Apple,fruit,FR
c2,C,2024-01-03,1,4.00,,veg,
c3,B,2024-01-05T08:00:00Z,1,0.40,Banana,,NA
"""


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    """``text`` as a UTF-8 file ``name`` in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def counts(report: DataQualityReport) -> dict[str, int]:
    """The report's counters, without the per-column and stream breakdowns."""
    d = report.to_dict()
    d.pop("unparseable_by_column")
    d.pop("events_from_stream")
    return d


def without_first_days(model_dir: Path, out: Path) -> Path:
    """A copy of ``model_dir`` at ``out`` as the code before first purchase days per item wrote it: no
    ``first_day`` in history.npz (and the manifest's checksum of that file to match)."""
    shutil.copytree(model_dir, out)
    with np.load(out / "history.npz") as arrays:
        kept = {name: arrays[name] for name in arrays.files if name != "first_day"}
    np.savez(out / "history.npz", **kept)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["history.npz"] = hashlib.sha256((out / "history.npz").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
