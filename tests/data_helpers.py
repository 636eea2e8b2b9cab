"""What the purchase-log tests share: a file written from text, a small generic log, the Online Retail header
and the report's counters."""

from __future__ import annotations

from pathlib import Path

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
