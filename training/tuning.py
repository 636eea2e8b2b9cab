"""Self-tuning: the default model is chosen on the shop's own data, within a time budget.

A blend tuned on one shop loses to plain popularity on another (a grocery log where customers do not
re-buy the same items more than chance), so ``tailor train`` without ``--algorithm`` measures instead of
assuming. Validation folds end where the evaluation holdout starts - fold 1 holds out the ``holdout_days``
before it, fold 2 the ones before that - so the holdout that ``tailor train`` / ``evaluate`` report is never
seen by the search. Every candidate is fitted on each fold's training part and ranks the whole catalogue.

Candidates, most informative first (the search stops starting new ones when the budget is spent):

1. popularity and buy-again (no fit worth the name);
2. the hybrid with its default CF part, and a grid of blends (``rebuy_weight`` x ``cf_weight`` x
   ``popularity_weight``) scored from one set of hybrid components per fold, so the grid costs one fit;
3. the other algorithms at their defaults (ALS, item-kNN, EASE where the catalogue allows it, and the
   repeat-aware next-basket models when registered);
4. the hybrid's half-lives and CF settings, each refitted and blended with the best weights so far.

The choice maximises the mean over both views (overall and discovery NDCG@k) of each view's NDCG
relative to the best candidate of that view: one model serves both rankings, and this objective keeps
the default from trading one view away for the other.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.history import PurchaseHistory
from scoring.models import ALGORITHMS, HYPERPARAMETERS, create
from scoring.models.ease import MAX_ITEMS
from scoring.models.hybrid import HybridRecommender
from scoring.threads import limit_blas_threads
from training.evaluate import Metrics, Split, evaluate_variants, make_split, split_log

DEFAULT_BUDGET_S = 40.0
VALIDATION_FOLDS = 2
#: Customers evaluated per fold: enough for NDCG differences of ~0.005 to show, small enough for the budget.
FOLD_CUSTOMERS = 4_000
BLEND_GRID = {
    "rebuy_weight": (0.0, 0.25, 1.0),
    "cf_weight": (0.25, 0.5, 1.0),
    "popularity_weight": (0.05, 0.15, 0.5, 1.5),
}
#: Hybrid variants refitted in stage 4 (each blended with the best weights found so far).
HYBRID_VARIANTS: tuple[dict[str, Any], ...] = (
    {"rebuy_half_life": 90.0},
    {"half_life": 0.0},
    {"popularity_window_days": 30.0},
    {"rebuy_weighting": "log"},
    {"regularization": 500.0},
    {"rebuy_half_life": 0.0},
)
OTHER_ALGORITHMS = ("als", "item-knn", "ease", "tifu-knn", "upcf")


@dataclass(frozen=True)
class Trial:
    """One configuration measured on the validation folds (mean NDCG@k over folds)."""

    algorithm: str
    params: dict[str, Any]
    overall: float
    discovery: float
    seconds: float
    objective: float = 0.0


@dataclass
class TuningResult:
    """The chosen configuration and everything that was measured to choose it."""

    algorithm: str
    params: dict[str, Any]
    trials: list[Trial]
    budget_seconds: float
    spent_seconds: float
    folds: list[dict[str, Any]]
    k: int
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the manifest's ``tuning`` entry)."""
        return asdict(self)

    def format(self, top: int = 12) -> str:
        """The validation table for the terminal: best configurations first, the chosen one marked."""
        lines = [f"tuning: {len(self.trials)} configurations on {len(self.folds)} validation fold(s) "
                 f"(" + ", ".join(f"{f['start'][:10]}..{f['end'][:10]}, {f['customers']} customers"
                                  for f in self.folds)
                 + f"), {self.spent_seconds:.0f}s of a {self.budget_seconds:g}s budget"]
        lines.append(f"  {'':2}{'algorithm':<11}{'overall':>9}{'discovery':>11}{'objective':>11}{'fit s':>7}  "
                     "settings")
        ranked = sorted(self.trials, key=lambda t: -t.objective)
        for trial in ranked[:top]:
            chosen = trial.algorithm == self.algorithm and trial.params == self.params
            lines.append(f"  {'*' if chosen else ' ':2}{trial.algorithm:<11}{trial.overall:>9.4f}"
                         f"{trial.discovery:>11.4f}{trial.objective:>11.4f}{trial.seconds:>7.1f}  "
                         f"{_short(trial.algorithm, trial.params)}")
        if len(ranked) > top:
            lines.append(f"  ... {len(ranked) - top} more in the manifest")
        if self.skipped:
            lines.append(f"  not tried within the budget: {', '.join(self.skipped)}")
        return "\n".join(lines)


def _short(algorithm: str, params: dict[str, Any]) -> str:
    """The params that differ from the algorithm's defaults."""
    declared = HYPERPARAMETERS.get(algorithm, {})
    changed = {k: v for k, v in params.items() if k in declared and declared[k].default != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


def validation_folds(interactions: pd.DataFrame, holdout_days: float, folds: int = VALIDATION_FOLDS,
                     max_customers: int = FOLD_CUSTOMERS) -> list[Split]:
    """Up to ``folds`` splits that end where the reported holdout starts (fewer if the log is too short)."""
    out: list[Split] = []
    before, _, _ = split_log(interactions, holdout_days)
    for _ in range(folds):
        if before.empty:
            break
        try:
            split = make_split(before, holdout_days, max_customers=max_customers)
        except ValueError:
            break
        if len(split.rows) == 0:
            break
        out.append(split)
        before, _, _ = split_log(before, holdout_days)
    return out


class _Search:
    """Trials run one after the other until the budget is spent."""

    def __init__(self, folds: list[Split], budget_s: float, k: int, progress: Callable[[str], None]) -> None:
        self.folds = folds
        self.k = k
        self.deadline = time.perf_counter() + budget_s
        self.trials: list[Trial] = []
        self.skipped: list[str] = []
        self.progress = progress

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def _record(self, algorithm: str, params: dict[str, Any], results: list[tuple[Metrics, Metrics]],
                seconds: float) -> Trial:
        trial = Trial(algorithm, params, float(np.mean([o.ndcg for o, _ in results])),
                      float(np.mean([d.ndcg for _, d in results])), round(seconds, 2))
        self.trials.append(trial)
        self.progress(f"  tried {algorithm:<10} overall {trial.overall:.4f}  discovery {trial.discovery:.4f}  "
                      f"{_short(algorithm, params)}")
        return trial

    def plain(self, algorithm: str, params: dict[str, Any] | None = None) -> None:
        """Fit and evaluate one configuration on every fold."""
        if self.time_left() <= 0:
            self.skipped.append(f"{algorithm} {_short(algorithm, params or {})}")
            return
        started = time.perf_counter()
        results, fitted_params = [], {}
        for split in self.folds:
            model = create(algorithm, **(params or {}))
            model.fit(split.train)
            fitted_params = dict(model.params)
            results += evaluate_variants(split, lambda history, m=model: [m.score(history)], self.k)
        self._record(algorithm, fitted_params, results, time.perf_counter() - started)

    def hybrid(self, params: dict[str, Any], blends: list[dict[str, float]]) -> None:
        """Fit the hybrid once per fold and evaluate every blend of its components."""
        if self.time_left() <= 0:
            self.skipped.append(f"hybrid {_short('hybrid', params)}")
            return
        started = time.perf_counter()
        per_blend: list[list[tuple[Metrics, Metrics]]] = [[] for _ in blends]
        fitted_params: dict[str, Any] = {}
        for split in self.folds:
            model = create("hybrid", **params)
            assert isinstance(model, HybridRecommender)
            model.fit(split.train)
            fitted_params = dict(model.params)

            def variants(history: PurchaseHistory, m: HybridRecommender = model) -> list[np.ndarray]:
                components = m.components(history)
                return [m.blend(components, weights) for weights in blends]

            for index, result in enumerate(evaluate_variants(split, variants, self.k)):
                per_blend[index].append(result)
        seconds = (time.perf_counter() - started) / max(len(blends), 1)
        for weights, results in zip(blends, per_blend, strict=True):
            self._record("hybrid", {**fitted_params, **weights}, results, seconds)

    def best(self) -> Trial:
        """The trial with the best objective (mean over views of NDCG relative to the view's best)."""
        top_overall = max((t.overall for t in self.trials), default=0.0) or 1.0
        top_discovery = max((t.discovery for t in self.trials), default=0.0) or 1.0
        scored = [Trial(t.algorithm, t.params, t.overall, t.discovery, t.seconds,
                        round(0.5 * (t.overall / top_overall + t.discovery / top_discovery), 6))
                  for t in self.trials]
        self.trials = scored
        return max(scored, key=lambda t: t.objective)


def _blends() -> list[dict[str, float]]:
    names = list(BLEND_GRID)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*BLEND_GRID.values())]


def _blend_of(trial: Trial) -> dict[str, float]:
    return {name: trial.params[name] for name in BLEND_GRID}


def _candidates(n_items: int) -> Iterator[str]:
    for name in OTHER_ALGORITHMS:
        if name not in ALGORITHMS or (name == "ease" and n_items > MAX_ITEMS):
            continue
        yield name


def search(interactions: pd.DataFrame, *, holdout_days: float = 30.0, budget_s: float = DEFAULT_BUDGET_S,
           k: int = 10, folds: int = VALIDATION_FOLDS, quiet: bool = False) -> TuningResult | None:
    """Choose an algorithm and its settings on validation folds before the holdout; None when the log is
    too short to hold out even one fold (the caller then keeps the default)."""
    started = time.perf_counter()
    splits = validation_folds(interactions, holdout_days, folds)
    if not splits:
        return None

    def progress(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    run = _Search(splits, budget_s, k, progress)
    with limit_blas_threads():
        run.plain("popular")
        run.plain("buy-again")
        run.hybrid({}, _blends())
        for name in _candidates(splits[0].train.shape[1]):
            run.plain(name)
        for variant in HYBRID_VARIANTS:
            best = run.best()
            if best.algorithm == "hybrid":  # refine the best hybrid: one setting changed, its best blend
                fitted = {name: value for name, value in best.params.items() if name not in BLEND_GRID}
                run.hybrid({**fitted, **variant}, [_blend_of(best)])
            else:  # another algorithm leads: give the hybrid's variants the whole blend grid
                run.hybrid(variant, _blends())
    chosen = run.best()
    return TuningResult(
        algorithm=chosen.algorithm, params=chosen.params, trials=run.trials, budget_seconds=budget_s,
        spent_seconds=round(time.perf_counter() - started, 1),
        folds=[{"start": split.cutoff.isoformat(),
                "end": (split.cutoff + pd.Timedelta(days=holdout_days)).isoformat(),
                "customers": len(split.rows)} for split in splits],
        k=k, skipped=run.skipped,
    )
