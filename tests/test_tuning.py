"""The default tunes itself on the shop's own data: synthetic logs where the right answer is known.

A shop whose customers never buy the same item twice must get a model that ranks new items first; a shop
of staples bought again and again must get one that ranks the customer's own items first. Both run through
`tailor train` (the default, no --algorithm), so the search, the manifest and the terminal are checked too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.artifact import read_artifact
from tailor.cli import main
from training.data import load_purchase_log
from training.tuning import search, validation_folds

N_CUSTOMERS, N_ITEMS, GROUPS, DAYS = 240, 400, 4, 150
START = pd.Timestamp("2024-01-01")


def synthetic_log(repeats: bool, seed: int = 3) -> pd.DataFrame:
    """Customers in four taste groups, one purchase day a week. ``repeats``: each customer re-buys their
    own six staples; otherwise every purchase is an item of their group they never bought before."""
    rng = np.random.default_rng(seed)
    rows = []
    per_group = N_ITEMS // GROUPS
    for customer in range(N_CUSTOMERS):
        group = customer % GROUPS
        items = np.arange(group * per_group, (group + 1) * per_group)
        staples = rng.choice(items, size=6, replace=False)
        unseen = list(rng.permutation(items))
        for day in range(int(rng.integers(0, 7)), DAYS, 7):
            if repeats:
                basket = rng.choice(staples, size=3, replace=False)
            else:
                basket = [unseen.pop() for _ in range(min(2, len(unseen)))]
                if not basket:
                    break
            for item in basket:
                rows.append((f"c{customer:04d}", f"i{int(item):03d}", START + pd.Timedelta(days=day), 1))
    return pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp", "quantity"])


def cleaned(repeats: bool, tmp_path: Path) -> pd.DataFrame:
    """The synthetic log as `tailor train` reads it."""
    data = tmp_path / "log.csv"
    synthetic_log(repeats).to_csv(data, index=False)
    return load_purchase_log(data).interactions


def own_item_share(model_dir: Path, customers: int = 40) -> float:
    """Share of the top 10 that the customer bought before, over the first customers of the artifact."""
    artifact = read_artifact(model_dir)
    scores = artifact.model.score(artifact.history.rows(np.arange(customers)))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    own = [np.isin(top[row], artifact.history.items_of(row)).mean() for row in range(customers)]
    return float(np.mean(own))


def repeat_aware(algorithm: str, params: dict) -> bool:
    """Does the configuration rank the customer's own past items by their re-purchase signal?"""
    if algorithm in {"buy-again", "tifu-knn", "upcf"}:
        return True
    return algorithm == "hybrid" and params["rebuy_weight"] > 0.1


@pytest.mark.parametrize("repeats", [False, True], ids=["no-repeats", "staples"])
def test_the_default_picks_what_the_shop_needs(repeats: bool, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "log.csv"
    synthetic_log(repeats).to_csv(data, index=False)
    out = tmp_path / "model"
    assert main(["train", "--data", str(data), "--out", str(out), "--tune-budget", "30", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    tuning = summary["tuning"]
    assert tuning is not None and len(tuning["trials"]) >= 5
    assert "tuning:" in captured.err and "validation fold" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tuning"]["algorithm"] == manifest["algorithm"] == summary["algorithm"]
    assert manifest["params"] == {**manifest["params"], **tuning["params"]}
    evaluated = [f["end"] for f in tuning["folds"]]
    cutoff = manifest["evaluation"]["cutoff"]
    assert all(end <= cutoff for end in evaluated), "a validation fold overlaps the reported holdout"
    chosen = (manifest["algorithm"], manifest["params"])
    assert repeat_aware(*chosen) == repeats, chosen
    if repeats:
        assert own_item_share(out) > 0.5, chosen


def test_budget_zero_and_forced_algorithm_skip_the_search(tmp_path: Path) -> None:
    data = tmp_path / "log.csv"
    synthetic_log(False).to_csv(data, index=False)
    for flags, algorithm in ((["--tune-budget", "0"], "hybrid"), (["--algorithm", "ease"], "ease")):
        out = tmp_path / algorithm
        assert main(["--quiet", "train", "--data", str(data), "--out", str(out), "--no-eval", *flags]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["algorithm"] == algorithm and manifest["tuning"] is None


def test_validation_folds_end_where_the_holdout_starts(tmp_path: Path) -> None:
    log = cleaned(True, tmp_path)
    folds = validation_folds(log, holdout_days=30, folds=2)
    holdout_start = log["timestamp"].max() - pd.Timedelta(days=30)
    assert len(folds) == 2
    for fold in folds:
        assert fold.cutoff + pd.Timedelta(days=30) <= holdout_start + pd.Timedelta(seconds=1)
    assert folds[1].cutoff < folds[0].cutoff


def test_a_budget_too_small_for_the_default_keeps_it(tmp_path: Path) -> None:
    """Nothing measured, or only popularity: the search must not replace the default it never compared."""
    result = search(cleaned(True, tmp_path), budget_s=0.001, quiet=True)
    assert result is not None
    assert result.kept_default and result.stopped
    assert (result.algorithm, result.params) == ("hybrid", {})
    assert "keeping hybrid with its defaults" in result.format()
    assert result.to_dict()["kept_default"] is True


def test_the_budget_bounds_the_whole_search(tmp_path: Path) -> None:
    """A fit that outlasts the time left is stopped, not waited for: the search ends at its budget, and
    chooses among what it measured by then (an unbounded search of this log takes several times longer)."""
    log = cleaned(True, tmp_path)
    began = time.monotonic()
    unbounded = search(log, budget_s=600, quiet=True)
    full_s = time.monotonic() - began
    assert unbounded is not None and unbounded.stopped is None and not unbounded.skipped
    budget = full_s / 3
    began = time.monotonic()
    bounded = search(log, budget_s=budget, quiet=True)
    took = time.monotonic() - began
    assert bounded is not None and bounded.stopped
    assert took < budget + 1.0, (took, budget)  # the child is stopped at the deadline, plus its clean-up
    assert bounded.spent_seconds <= budget + 1.0
    measured = {(t.algorithm, json.dumps(t.params, sort_keys=True)) for t in bounded.trials}
    assert measured < {(t.algorithm, json.dumps(t.params, sort_keys=True)) for t in unbounded.trials}
    if not bounded.kept_default:
        assert (bounded.algorithm, json.dumps(bounded.params, sort_keys=True)) in measured

