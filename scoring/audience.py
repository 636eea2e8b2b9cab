"""Audiences: which customers to target for items, a category, a look-alike seed set or a re-order.

The same arithmetic serves ``POST /v1/audiences`` (over the customers published with the served version)
and ``tailor audience`` (over every customer of a model directory), so the benchmark in
``bench/quality/audience.py`` measures what both answer.

Affinity of customer c for target item j (docs/BENCHMARKS.md, "Audiences")::

    affinity(c, j) = orders(c, j) + (CF_WEIGHT * score(c, j) + ACTIVITY_WEIGHT) * log1p(orders(c))

``orders(c, j)`` is the number of distinct orders of j (re-buying dominates who buys an item next month),
``score`` the served model's score of j in c's row (its within-customer preference: the only signal for
customers who never bought j) and ``log1p(orders(c))`` the customer's volume, which turns a
within-customer preference into something comparable across customers (and alone ranks active customers
first among equal order counts). Several targets (a category, a
promotion's items) aggregate by ``max`` (items) or ``sum`` (categories: a customer buying many of the
category's items ranks above one who buys one of them).

Customers are scored in chunks of at most ``CHUNK_CELLS`` scores (rows x catalogue), one ``model.score``
per chunk, keeping only the target columns.

Eligibility (the rules of promotions: customers, min_orders, min_spend, countries, journey_stages), its
checks, the merge of a promotion's rules with an audience's and the reason wording are here too, so that
the API and ``tailor audience`` filter and explain the same customers the same way.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from scoring.history import PurchaseHistory
from scoring.journey import STAGES, StageRules, stage_codes
from scoring.models.base import Recommender

CHUNK_CELLS = 1 << 23  # ~32 MB of float32 scores at once, whatever the catalogue
#: Weight of the model's (volume-scaled) score next to the order count; chosen on a validation fold
#: ending where the reported holdout starts (bench/quality/audience.py --validation).
CF_WEIGHT = 0.05
ACTIVITY_WEIGHT = 0.3
MAX_SIZE = 100_000
#: Eligibility rules (those of promotions); every rule that is set must hold.
ELIGIBILITY_RULES = ("customers", "min_orders", "min_spend", "countries", "journey_stages")
MAX_ELIGIBLE_CUSTOMERS = 10_000
MAX_COUNTRIES = 300
MAX_ID_LENGTH = 256
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Population:
    """The customers an audience is chosen from, aligned with a model's item index."""

    customer_ids: np.ndarray  # str
    history: PurchaseHistory
    orders: np.ndarray  # int: distinct orders per customer
    spend: np.ndarray  # float
    first_day: np.ndarray  # float days since the epoch (inf without purchases)
    last_day: np.ndarray  # float days since the epoch (-inf without purchases)
    country: np.ndarray  # int index into the version's countries, -1 unknown

    def __len__(self) -> int:
        return len(self.customer_ids)

    def rows(self, index: np.ndarray) -> Population:
        """The customers at rows ``index``."""
        return Population(self.customer_ids[index], self.history.rows(index), self.orders[index],
                          self.spend[index], self.first_day[index], self.last_day[index], self.country[index])


@dataclass(frozen=True)
class Scored:
    """Per customer: the audience score (-inf = not a candidate), the target behind it and its order count."""

    score: np.ndarray  # float64
    item: np.ndarray  # int64 item index behind the score (-1 none)
    bought: np.ndarray  # float: orders of that item
    extra: np.ndarray | None = None  # due for re-order: days overdue; look-alike: similarity


def chunks(n_rows: int, n_items: int, cells: int = CHUNK_CELLS) -> Iterator[slice]:
    size = max(1, cells // max(1, n_items))
    for start in range(0, n_rows, size):
        yield slice(start, min(n_rows, start + size))


def item_affinity(model: Recommender, population: Population, targets: np.ndarray, *, aggregate: str = "max",
                  cf_weight: float = CF_WEIGHT, activity_weight: float | None = None,
                  cells: int = CHUNK_CELLS) -> Scored:
    """Every customer's affinity for ``targets`` (item indices), vectorised over customers in chunks."""
    targets = np.asarray(targets, dtype=np.int64)
    history = population.history
    n = len(population)
    score = np.full(n, -np.inf)
    item = np.full(n, -1, dtype=np.int64)
    bought = np.zeros(n)
    if not len(targets) or not n:
        return Scored(score, item, bought)
    volume = np.log1p(population.orders.astype(np.float64))
    if activity_weight is None:
        activity_weight = ACTIVITY_WEIGHT
    counts = history.orders.tocsc()[:, targets]
    for rows in chunks(n, history.shape[1], cells):
        model_scores = model.score(history.rows(rows))[:, targets].astype(np.float64)
        orders = counts[rows].toarray().astype(np.float64)
        affinity = orders + (cf_weight * model_scores + activity_weight) * volume[rows, None]
        best = np.argmax(affinity, axis=1)
        score[rows] = affinity.sum(axis=1) if aggregate == "sum" else affinity[np.arange(len(best)), best]
        item[rows] = targets[best]
        bought[rows] = orders[np.arange(len(best)), best]
    return Scored(score, item, bought)


def customer_vectors(item_embeddings: np.ndarray, history: PurchaseHistory) -> np.ndarray:
    """(customers, dim) float32, L2-normalised: log1p(order count)-weighted sums of item embeddings
    (``scoring.embeddings.customer_embedding`` for every customer in one sparse product)."""
    weights = sp.csr_matrix((np.log1p(history.orders.data).astype(np.float32), history.orders.indices,
                             history.orders.indptr), shape=history.shape)
    vectors = np.asarray(weights @ item_embeddings, dtype=np.float32)
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    lengths[lengths == 0] = 1.0
    return vectors / lengths


def lookalike(item_embeddings: np.ndarray, population: Population, seeds: np.ndarray) -> Scored:
    """Cosine similarity of every customer to the centroid of the ``seeds`` (rows); seeds are excluded."""
    n = len(population)
    vectors = customer_vectors(item_embeddings, population.history)
    seeds = np.asarray(seeds, dtype=np.int64)
    centroid = vectors[seeds].mean(axis=0) if len(seeds) else np.zeros(vectors.shape[1], dtype=np.float32)
    length = float(np.linalg.norm(centroid))
    score = np.full(n, -np.inf)
    if length > 0:
        score = (vectors @ (centroid / length)).astype(np.float64)
        score[np.diff(population.history.orders.indptr) == 0] = -np.inf  # no history: nothing to compare
    score[seeds] = -np.inf
    return Scored(score, np.full(n, -1, dtype=np.int64), np.zeros(n), extra=score.copy())


def due_for_reorder(population: Population, now_day: float, targets: np.ndarray | None = None) -> Scored:
    """Customers whose typical re-order interval of an item (``targets``, else any) has passed.

    Interval = (latest purchase of the item - the customer's first purchase of that item) / (orders of it - 1),
    for items bought in at least two orders: dated from when the customer took the item up, so one who started
    buying it long after their first order is due on its own rhythm. Histories without the first day per item
    (models and versions published before it was kept; NaN entries) fall back to the customer's first purchase
    of anything, which overstates the interval of items taken up later. Per customer the item with the highest
    ``orders / (1 + overdue / interval)`` counts: frequent re-orders just past their time first, long-forgotten
    ones last.
    """
    history = population.history
    n = len(population)
    orders = history.orders
    rows = np.repeat(np.arange(n), np.diff(orders.indptr))
    cols = orders.indices.astype(np.int64)
    count = orders.data.astype(np.float64)
    last = history.last_day.data.astype(np.float64)
    first = np.where(np.isfinite(population.first_day), population.first_day, now_day)[rows]
    if history.first_day is not None:
        item_first = history.first_day.data.astype(np.float64)
        first = np.where(np.isnan(item_first), first, item_first)
    period = np.where(count >= 2, (last - first) / np.maximum(count - 1, 1), 0.0)
    overdue = now_day - last - period
    keep = (period > 0) & (overdue > 0)
    if targets is not None:
        keep &= np.isin(cols, np.asarray(targets, dtype=np.int64))
    rows, cols, count, period, overdue = rows[keep], cols[keep], count[keep], period[keep], overdue[keep]
    value = count / (1.0 + overdue / period)
    score = np.full(n, -np.inf)
    item = np.full(n, -1, dtype=np.int64)
    bought = np.zeros(n)
    late = np.zeros(n)
    if len(rows):
        order = np.lexsort((-value, rows))  # by customer, best entry first
        firsts = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        r = rows[firsts]
        score[r], item[r], bought[r], late[r] = value[firsts], cols[firsts], count[firsts], overdue[firsts]
    periods = np.zeros(n)
    if len(rows):
        periods[r] = period[firsts]
    return Scored(score, item, bought, extra=np.stack([late, periods], axis=1))


def select(scores: np.ndarray, size: int | None, min_score: float | None,
           eligible: np.ndarray | None = None) -> np.ndarray:
    """Rows of the audience, best first: finite scores, ``eligible``, >= ``min_score``, at most ``size``."""
    ok = np.isfinite(scores)
    if eligible is not None:
        ok &= eligible
    if min_score is not None:
        ok &= scores >= min_score
    rows = np.flatnonzero(ok)
    limit = min(size if size is not None else MAX_SIZE, MAX_SIZE, len(rows))
    if limit <= 0:
        return np.empty(0, dtype=np.int64)
    values = scores[rows]
    if limit < len(rows):
        part = np.argpartition(-values, limit - 1)[:limit]
        rows, values = rows[part], values[part]
    return rows[np.lexsort((rows, -values))]


# -- eligibility ------------------------------------------------------------------------------------------
class EligibilityError(ValueError):
    """A malformed eligibility document; the one-line message names the rule and the value at fault."""


def _ids(value: Any, name: str, most: int, longest: int, what: str) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise EligibilityError(f"{name}: a list of 1 to {most:,} {what}, got {_shown(value)}")
    for v in value:
        if not isinstance(v, str) or not v.strip() or len(v) > longest or _BAD_ID_CHARS.search(v):
            raise EligibilityError(f"{name}: {_shown(v)} is not a {what[:-1]} (1-{longest} characters, not blank, "
                                   "no control characters)")
    return value


def _shown(value: Any) -> str:
    """A value as the user wrote it (JSON), cut to one short line."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_eligibility(doc: Any) -> dict[str, Any]:
    """The rules of ``doc`` as ``POST /v1/audiences`` accepts them (null = no restriction), or
    ``EligibilityError`` naming the first unknown key or bad value."""
    if not isinstance(doc, dict):
        raise EligibilityError(f"expected a JSON object of rules ({', '.join(ELIGIBILITY_RULES)}), "
                               f"got {_shown(doc)}")
    unknown = [k for k in doc if k not in ELIGIBILITY_RULES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], ELIGIBILITY_RULES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EligibilityError(f"unknown key {unknown[0]!r}{hint}; known: {', '.join(ELIGIBILITY_RULES)}")
    rules: dict[str, Any] = {}
    for name, value in doc.items():
        if value is None:
            continue
        if name == "customers":
            rules[name] = _ids(value, name, MAX_ELIGIBLE_CUSTOMERS, MAX_ID_LENGTH, "customer ids")
        elif name == "countries":
            rules[name] = _ids(value, name, MAX_COUNTRIES, 100, "country names")
        elif name == "journey_stages":
            if not isinstance(value, list) or not 1 <= len(value) <= len(STAGES):
                raise EligibilityError(f"journey_stages: a list of 1 to {len(STAGES)} stages, got {_shown(value)}")
            bad = [s for s in value if s not in STAGES]
            if bad:
                raise EligibilityError(f"journey_stages: unknown stage {_shown(bad[0])}; known: {', '.join(STAGES)}")
            rules[name] = value
        elif name == "min_orders":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EligibilityError(f"min_orders: an integer >= 0, got {_shown(value)}")
            rules[name] = value
        else:  # min_spend
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise EligibilityError(f"min_spend: a number >= 0, got {_shown(value)}")
            rules[name] = value
    return rules


def merge_eligibility(promotion: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A promotion's rules, each replaced by the audience's rule of the same name where that one is set
    (a rule left out or null keeps the promotion's: it never lifts a restriction of the promotion)."""
    merged = {k: v for k, v in (promotion or {}).items() if v is not None}
    merged.update({k: v for k, v in (given or {}).items() if v is not None})
    return merged


def eligible(population: Population, rules: Mapping[str, Any], *, countries: Sequence[str], now_day: float,
             stages: StageRules) -> np.ndarray | None:
    """The eligibility ``rules`` over every customer at once (None = everybody); ``countries``: the names of
    the population's country codes (matched case-insensitively), ``stages``: the journey stage thresholds."""
    if not rules:
        return None
    ok = np.ones(len(population), dtype=bool)
    if rules.get("customers") is not None:
        ok &= np.isin(population.customer_ids, np.asarray(list(rules["customers"]), dtype=str))
    if rules.get("min_orders") is not None:
        ok &= population.orders >= rules["min_orders"]
    if rules.get("min_spend") is not None:
        ok &= population.spend >= rules["min_spend"]
    if rules.get("countries") is not None:
        wanted = {c.casefold() for c in rules["countries"]}
        codes = [i for i, name in enumerate(countries) if str(name).casefold() in wanted]
        ok &= np.isin(population.country, codes)
    if rules.get("journey_stages") is not None:
        stage = stage_codes(population.orders, population.last_day, now_day, stages)
        ok &= np.isin(stage, [STAGES.index(s) for s in rules["journey_stages"]])
    return ok


# -- reasons ----------------------------------------------------------------------------------------------
#: What an audience was scored by: ``item_affinity`` (items, categories, promotions), ``due_for_reorder``,
#: ``lookalike``.
KINDS = ("items", "due", "lookalike")


def reason(kind: str, scored: Scored, row: int, label: Callable[[int], str]) -> str:
    """Why customer ``row`` is in the audience, for people; ``label`` names an item index."""
    if kind == "lookalike":
        return f"buys like the seed customers (similarity {float(scored.score[row]):.2f})"
    item = int(scored.item[row])
    named = label(item) if item >= 0 else "the target items"
    if kind == "due":
        assert scored.extra is not None
        late, period = scored.extra[row]
        return f"due to re-order {named}: {late:.0f} days overdue (re-orders about every {period:.0f} days)"
    bought = int(scored.bought[row])
    if bought > 0:
        return f"bought {named} in {bought} order{'s' if bought != 1 else ''}"
    return f"predicted to like {named}"
