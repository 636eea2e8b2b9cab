"""`tailor recommend` answers what the API answers: every customer of the sample and an unknown one, the same
items in the same order and the same scores as GET /v1/customers/{id}/recommendations, with and without
exclude_purchased."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scoring.artifact import read_artifact
from tailor.cli import main

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]


@pytest.mark.parametrize("exclude", [False, True])
def test_every_customer_as_the_api(service: Service, sample_model: Path, tmp_path: Path, exclude: bool) -> None:
    artifact = read_artifact(sample_model)
    customers = [str(c) for c in artifact.customer_ids] + ["nobody-we-know"]  # the last: the popular fallback
    (tmp_path / "ids.txt").write_text("\n".join(customers) + "\n")
    out = tmp_path / "recs.csv"
    assert main(["-q", "recommend", "--model", str(sample_model), "--customers", str(tmp_path / "ids.txt"),
                 "--n", "10", "--output", str(out), *(["--exclude-purchased"] if exclude else [])]) == 0
    batch: dict[str, list[tuple[str, float]]] = {}
    with open(out, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            batch.setdefault(row["customer_id"], []).append((row["item_id"], float(row["score"])))
    differ = []
    for customer in customers:
        answer = service.get(f"/v1/customers/{customer}/recommendations?n=10"
                             f"{'&exclude_purchased=true' if exclude else ''}").get_json()
        api = [(item["item_id"], float(item["score"])) for item in answer["items"]]
        if api != batch[customer]:
            differ.append((customer, api[:3], batch[customer][:3]))
    assert not differ, (len(differ), differ[:3])
