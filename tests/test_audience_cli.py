"""`tailor audience` on the model trained from the shipped sample: the service's audience, in batch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scoring.artifact import read_artifact
from tailor.cli import main

pytest_plugins = ["tests.marketing_support"]


def rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.reader(f))


def test_items_audience(sample_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = read_artifact(sample_model)
    item = str(artifact.item_ids[int(np.argmax(np.asarray((artifact.history.orders > 0).sum(axis=0)).ravel()))])
    out = tmp_path / "audience.csv"
    assert main(["audience", "--model", str(sample_model), "--items", item, "--size", "25",
                 "--output", str(out)]) == 0
    table = rows(out)
    assert table[0] == ["customer_id", "score", "reason"] and len(table) == 26
    scores = [float(r[1]) for r in table[1:]]
    assert scores == sorted(scores, reverse=True)
    assert "customers/s" in capsys.readouterr().err


def test_modes_and_errors(sample_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.csv"
    artifact = read_artifact(sample_model)
    seeds = [str(c) for c in artifact.customer_ids[:2]]
    assert main(["audience", "--model", str(sample_model), "--lookalike", *seeds, "--size", "5",
                 "--output", str(out)]) == 0
    assert not {r[0] for r in rows(out)[1:]} & set(seeds)
    assert main(["audience", "--model", str(sample_model), "--due-for-reorder", "--size", "5",
                 "--output", str(out)]) == 0
    assert all("days overdue" in r[2] for r in rows(out)[1:])
    capsys.readouterr()
    assert main(["audience", "--model", str(sample_model), "--items", "x", "--lookalike", seeds[0], "--size", "5",
                 "--output", str(out)]) == 2
    assert "--items and --lookalike" in capsys.readouterr().err
    assert main(["audience", "--model", str(sample_model), "--items", "nope", "--size", "5",
                 "--output", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_train_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.marketing_support import SAMPLE_CSV

    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-q", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--no-eval",
                 "--tune-budget", "0", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()
