"""Self-tuning: the default model is chosen on the shop's own data, within a time budget.

A blend tuned on one shop loses to plain popularity on another (a grocery log where customers do not
re-buy the same items more than chance), so ``tailor train`` without ``--algorithm`` measures instead of
assuming. Validation folds end where the evaluation holdout starts - fold 1 holds out the ``holdout_days``
before it, fold 2 the ones before that - so the holdout that ``tailor train`` / ``evaluate`` report is never
seen by the search. Every candidate is fitted on each fold's training part and ranks the whole catalogue.

Candidates, most informative first. The search runs in a child process (``training.bounded``) that is
stopped when the budget is spent, so ``--tune-budget`` bounds the wall time; the choice is made among the
configurations measured by then. A budget that ends before the default configuration (the hybrid with its
defaults, candidate 2) is measured keeps that default, as ``--tune-budget 0`` would: a search that saw only
popularity must not replace a model it never compared it with.

1. popularity and buy-again (no fit worth the name);
2. the hybrid, fitted once per fold, and a coordinate search over its blend weights (``rebuy_weight``,
   ``popularity_weight``, ``cf_weight``) scored from the kept components, so the search costs one fit;
3. the other algorithms at their defaults (ALS, item-kNN, EASE where the catalogue allows it, and the
   repeat-aware next-basket models when registered);
4. the hybrid's half-lives and CF settings, each refitted and blended with the best weights so far.

The choice maximises the mean over folds and both views (overall and discovery NDCG@k) of the NDCG
relative to the best candidate of that fold and view: one model serves both rankings, this objective keeps
the default from trading one view away for the other, and every validation month counts the same. Gains
below ``NOISE_MARGIN`` do not displace an earlier candidate (the defaults come first), so the choice does
not chase fold noise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scoring.models import ALGORITHMS, DEFAULT_ALGORITHM, HYPERPARAMETERS, create
from scoring.models.ease import MAX_ITEMS
from scoring.models.hybrid import HybridRecommender, scaled_popularity
from scoring.threads import limit_blas_threads
from training.bounded import Send, run_until
from training.evaluate import Metrics, Split, chunks, evaluate_variants, make_split, split_log

DEFAULT_BUDGET_S = 120.0
VALIDATION_FOLDS = 2
#: Customers evaluated per fold: enough for NDCG differences of ~0.005 to show, small enough for the budget.
FOLD_CUSTOMERS = 3_000
#: Blend weights tried one coordinate at a time, from the defaults (every term is scaled to [0, 1]).
BLEND_GRID: dict[str, tuple[float, ...]] = {
    "rebuy_weight": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    "popularity_window_days": (14.0, 0.0, 60.0),  # 0 = all time: robust when the last weeks were unusual
    "popularity_weight": (0.0, 0.05, 0.15, 0.5, 1.5, 4.0),
    "cf_weight": (0.1, 0.25, 0.5, 1.0, 2.0),
}
BLEND_PASSES = 1
#: Hybrid variants refitted in stage 4 (each blended with the best weights found so far).
HYBRID_VARIANTS: tuple[dict[str, Any], ...] = (
    {"rebuy_half_life": 90.0},
    {"half_life": 0.0},
    {"rebuy_weighting": "log"},
    {"rebuy_half_life": 0.0},
    {"regularization": 500.0},
    {"cf": "item-knn"},
    {"cf": "tifu-knn"},  # the nearest customers' baskets as the CF part (TIFU-KNN's defaults, neighbours only)
)
#: Other algorithms, at their defaults and, for TIFU-KNN, also at the paper's grocery setting.
OTHER_ALGORITHMS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("tifu-knn", {}),
    ("tifu-knn", {"distance": "euclidean", "neighbours": 300, "alpha": 0.9, "group_decay": 0.5}),
    ("upcf", {}), ("als", {}), ("item-knn", {}), ("ease", {}),
)
#: A later candidate replaces an earlier one only if its objective is higher by more than this: with ~1,000
#: customers per fold the standard error of an NDCG difference is ~0.003-0.006, so smaller gains are noise,
#: and the earlier (simpler, default-nearer) configuration is kept.
NOISE_MARGIN = 0.0025


@dataclass(frozen=True)
class Trial:
    """One configuration measured on the validation folds (mean NDCG@k over folds)."""

    algorithm: str
    params: dict[str, Any]
    overall: float
    discovery: float
    seconds: float
    objective: float = 0.0
    #: (overall, discovery) NDCG@k of each fold, the inputs of the objective.
    folds: list[tuple[float, float]] = field(default_factory=list)


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
    #: The candidate being measured when the budget ran out (stopped, not chosen from), if any.
    stopped: str | None = None
    #: True when the budget ended before the default configuration was measured: it is kept.
    kept_default: bool = False

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
        if self.stopped:
            lines.append(f"  stopped at the budget while measuring: {self.stopped}")
        if self.skipped:
            lines.append(f"  not tried within the budget: {', '.join(self.skipped)}")
        if self.kept_default:
            lines.append(f"  the budget ended before the default configuration was measured: keeping "
                         f"{self.algorithm} with its defaults (as --tune-budget 0)")
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
    """Trials run one after the other (in the search's child process) until the budget is spent; each
    trial, skip and start is sent to the parent as it happens (``send``)."""

    def __init__(self, folds: list[Split], budget_s: float, k: int, send: Send) -> None:
        self.folds = folds
        self.k = k
        self.deadline = time.perf_counter() + budget_s
        self.trials: list[Trial] = []
        self.send = send

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def _record(self, algorithm: str, params: dict[str, Any], results: list[tuple[Metrics, Metrics]],
                seconds: float) -> Trial:
        trial = Trial(algorithm, params, float(np.mean([o.ndcg for o, _ in results])),
                      float(np.mean([d.ndcg for _, d in results])), round(seconds, 2),
                      folds=[(round(o.ndcg, 6), round(d.ndcg, 6)) for o, d in results])
        self.trials.append(trial)
        self.send(("trial", trial))
        self.send(("progress", f"  tried {algorithm:<10} overall {trial.overall:.4f}  discovery "
                               f"{trial.discovery:.4f}  {_short(algorithm, params)}"))
        return trial

    def _begin(self, label: str) -> bool:
        """Whether a candidate may start (time is left); tells the parent either way."""
        if self.time_left() <= 0:
            self.send(("skip", label))
            return False
        self.send(("start", label))
        return True

    def plain(self, algorithm: str, params: dict[str, Any] | None = None) -> None:
        """Fit and evaluate one configuration on every fold."""
        if not self._begin(f"{algorithm} {_short(algorithm, params or {})}"):
            return
        started = time.perf_counter()
        results, fitted_params = [], {}
        for split in self.folds:
            model = create(algorithm, **(params or {}))
            model.fit(split.train)
            fitted_params = dict(model.params)
            results += evaluate_variants(split, lambda history, m=model: [m.score(history)], self.k)
        self._record(algorithm, fitted_params, results, time.perf_counter() - started)

    def hybrid(self, params: dict[str, Any], weights: dict[str, float], *, refine: bool) -> None:
        """Fit the hybrid once per fold, keep its components, and evaluate blends of them: ``weights`` alone,
        or (``refine``) a coordinate search over ``BLEND_GRID`` starting there, until the budget is spent."""
        if not self._begin(f"hybrid {_short('hybrid', params)}"):
            return
        started = time.perf_counter()
        fitted: list[tuple[HybridRecommender, dict[float, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]] = []
        for split in self.folds:
            model = create("hybrid", **params)
            assert isinstance(model, HybridRecommender)
            model.fit(split.train)
            windows = {window: scaled_popularity(split.train, window)
                       for window in BLEND_GRID["popularity_window_days"]}
            fitted.append((model, windows, [model.components(history) for history in chunks(split)]))
        base = dict(fitted[0][0].params)
        fit_seconds = time.perf_counter() - started
        tried: dict[tuple[float, ...], Trial] = {}

        def measure(blend: dict[str, float]) -> Trial | None:
            key = tuple(blend[name] for name in BLEND_GRID)
            if key in tried:
                return tried[key]
            if tried and self.time_left() <= 0:
                self.send(("skip", f"hybrid {_short('hybrid', {**base, **blend})}"))
                return None
            began = time.perf_counter()
            results = []
            for split, (model, windows, cache) in zip(self.folds, fitted, strict=True):
                parts = iter(cache)
                popularity = windows[blend["popularity_window_days"]]
                results += evaluate_variants(
                    split, lambda _history, m=model, p=parts, w=blend, v=popularity: [m.blend(next(p), w, v)],
                    self.k)
            seconds = time.perf_counter() - began + (fit_seconds if not tried else 0.0)
            tried[key] = self._record("hybrid", {**base, **blend}, results, seconds)
            return tried[key]

        current = dict(weights)
        measure(current)
        for _ in range(BLEND_PASSES if refine else 0):
            before = dict(current)
            for name, values in BLEND_GRID.items():
                for value in values:
                    measure({**current, name: value})
                current = self._best_blend(tried.values())
            if current == before:
                break

    def _best_blend(self, trials: Iterable[Trial]) -> dict[str, float]:
        trials = list(trials)
        return _blend_of(_first_within_margin(trials, _objectives(trials, self.trials)))

    def best_hybrid(self) -> Trial | None:
        """The hybrid trial with the best objective among all trials so far (None before any)."""
        objectives = _objectives(self.trials, self.trials) if self.trials else []
        hybrids = [(t, o) for t, o in zip(self.trials, objectives, strict=True) if t.algorithm == "hybrid"]
        if not hybrids:
            return None
        return _first_within_margin([t for t, _ in hybrids], [o for _, o in hybrids])


def choose(trials: list[Trial]) -> tuple[list[Trial], Trial | None]:
    """The trials with their objectives (mean over folds and views of NDCG relative to the best), and the
    chosen one: None when the default configuration (the first hybrid trial) is not among them."""
    if not trials:
        return [], None
    scored = [replace(t, objective=o) for t, o in zip(trials, _objectives(trials, trials), strict=True)]
    if not any(t.algorithm == "hybrid" for t in scored):
        return scored, None
    return scored, _first_within_margin(scored, [t.objective for t in scored])


def _first_within_margin(trials: list[Trial], objectives: list[float]) -> Trial:
    """The earliest trial whose objective is within ``NOISE_MARGIN`` of the best one."""
    top = max(objectives)
    return next(t for t, o in zip(trials, objectives, strict=True) if o >= top - NOISE_MARGIN)


def _objectives(trials: list[Trial], reference: list[Trial]) -> list[float]:
    """Mean over folds and views of each trial's NDCG relative to the best of ``reference`` in that fold
    and view: every fold is one future month and counts the same, however easy its month was to predict
    (a mean of raw NDCG lets the easiest month choose; on Ta Feng it chose a blend that one month rewarded
    and the other punished)."""
    n_folds = min(len(t.folds) for t in reference)
    tops = np.array([t.folds[:n_folds] for t in reference]).max(axis=0)  # folds x views
    tops[tops == 0] = 1.0
    relative = np.array([t.folds[:n_folds] for t in trials]) / tops
    return [round(float(value), 6) for value in relative.mean(axis=(1, 2))]


def _default_blend() -> dict[str, float]:
    declared = HYPERPARAMETERS["hybrid"]
    return {name: float(declared[name].default) for name in BLEND_GRID}


def _blend_of(trial: Trial) -> dict[str, float]:
    return {name: trial.params[name] for name in BLEND_GRID}


def _candidates(n_items: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, params in OTHER_ALGORITHMS:
        if name not in ALGORITHMS or (name == "ease" and n_items > MAX_ITEMS):
            continue
        yield name, params


def fold_cf(n_items: int) -> dict[str, Any]:
    """The hybrid's CF settings for validation folds of a log with ``n_items`` items: the CF part the final
    fit on the whole log will choose (EASE, on the head above its catalogue limit), fixed for every fold so
    that what is tuned is what is served (the folds' smaller catalogues would otherwise get dense EASE)."""
    cf: dict[str, Any] = {"cf": "ease"}
    if n_items > min(HYPERPARAMETERS["hybrid"]["ease_max_items"].default, MAX_ITEMS):
        cf["ease_max_items"] = 0
    return cf


def search(interactions: pd.DataFrame, *, holdout_days: float = 30.0, budget_s: float = DEFAULT_BUDGET_S,
           k: int = 10, folds: int = VALIDATION_FOLDS, quiet: bool = False) -> TuningResult | None:
    """Choose an algorithm and its settings on validation folds before the holdout, in at most ``budget_s``
    seconds of wall time (folds, fits and all); None when the log is too short to hold out even one fold
    (the caller then keeps the default)."""
    started = time.monotonic()
    deadline = started + budget_s
    fold_info: list[dict[str, Any]] = []
    trials: list[Trial] = []
    skipped: list[str] = []
    running = ["preparing the validation folds"]

    def receive(message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "folds":
            fold_info.extend(payload)
        elif kind == "trial":
            trials.append(payload)
        elif kind == "skip":
            skipped.append(payload)
        elif kind == "start":
            running.append(payload)
        elif not quiet:
            print(payload, file=sys.stderr, flush=True)

    wall_deadline = time.time() + budget_s
    finished = run_until(deadline, _search_in_child, (interactions, holdout_days, folds, wall_deadline, k), receive)
    if finished and not fold_info:
        return None
    scored, chosen = choose(trials)
    algorithm, params = (DEFAULT_ALGORITHM, {}) if chosen is None else (chosen.algorithm, chosen.params)
    return TuningResult(
        algorithm=algorithm, params=params, trials=scored, budget_seconds=budget_s,
        spent_seconds=round(time.monotonic() - started, 1), folds=fold_info, k=k, skipped=skipped,
        stopped=None if finished else running[-1], kept_default=chosen is None,
    )


def _search_in_child(send: Send, interactions: pd.DataFrame, holdout_days: float, n_folds: int, deadline: float,
                     k: int) -> None:
    """The search's plan (see the module docstring), run by ``run_until`` in a child process; ``deadline``
    is wall-clock time (``time.time()``): new candidates start only before it, the parent stops the rest."""
    splits = validation_folds(interactions, holdout_days, n_folds)
    send(("folds", [{"start": split.cutoff.isoformat(),
                     "end": (split.cutoff + pd.Timedelta(days=holdout_days)).isoformat(),
                     "customers": len(split.rows)} for split in splits]))
    if not splits:
        return
    n_items = int(interactions["item_id"].nunique())
    run = _Search(splits, deadline - time.time(), k, send)
    with limit_blas_threads():
        run.plain("popular")
        run.plain("buy-again")
        run.hybrid(fold_cf(n_items), _default_blend(), refine=True)
        for name, params in _candidates(n_items):
            run.plain(name, params)
        for variant in HYBRID_VARIANTS:
            best = run.best_hybrid()
            if best is None:
                break
            fitted = {name: value for name, value in best.params.items() if name not in BLEND_GRID}
            run.hybrid({**fitted, **variant}, _blend_of(best), refine=False)
