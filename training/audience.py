"""`tailor audience`: the audience of ``POST /v1/audiences`` in batch, over every customer of a model directory.

The arithmetic, the eligibility rules and the reasons are ``scoring.audience`` (the service's), vectorised
over customers in chunks; the command reports customers scored per second. A promotion comes in as its
stored definition (the caller reads it from Redis): its items and categories are the targets (none: every
item, site-wide), its eligibility is merged with the given one rule by rule, as the API does.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TextIO

import numpy as np

from scoring import audience
from scoring.artifact import Artifact, item_label
from scoring.journey import StageRules
from scoring.recent_buyers import RecentBuyer, with_recent


class AudienceError(ValueError):
    """Bad targeting (unknown items, categories or seeds): a one-line message for the user."""


def population(artifact: Artifact) -> audience.Population:
    c = artifact.customers
    return audience.Population(np.asarray(artifact.customer_ids, dtype=str), artifact.history,
                               np.asarray(c.orders), np.asarray(c.spend), np.asarray(c.first_day),
                               np.asarray(c.last_day), np.asarray(c.country))


def _label(artifact: Artifact, index: int) -> str:
    return item_label(artifact.items[index] if index < len(artifact.items) else {}, str(artifact.item_ids[index]))


def _categories(artifact: Artifact) -> list[str | None]:
    return [str(m.get("category")) if m.get("category") is not None else None for m in artifact.items]


def promotion_targets(artifact: Artifact, promotion: Mapping[str, Any]) -> np.ndarray:
    """Item indices a promotion targets, as the service's ``TargetIndex.targets``: its items and the items of
    its categories that the model knows (unknown ones are never matched), or every item when site-wide."""
    items = [str(i) for i in promotion.get("items") or ()]
    categories = {str(c) for c in promotion.get("categories") or ()}
    if not items and not categories:
        return np.arange(len(artifact.item_ids), dtype=np.int64)
    index = artifact.item_index
    found = [index[i] for i in items if i in index]
    found += [k for k, c in enumerate(_categories(artifact)) if c is not None and c in categories]
    return np.unique(np.asarray(found, dtype=np.int64))


def export_audience(artifact: Artifact, out: TextIO, *, items: Sequence[str] = (), categories: Sequence[str] = (),
                    lookalike: Sequence[str] = (), due_for_reorder: bool = False,
                    promotion: Mapping[str, Any] | None = None, eligibility: Mapping[str, Any] | None = None,
                    stage_rules: StageRules | None = None, now_day: float | None = None, size: int | None = None,
                    min_score: float | None = None, inactive: Collection[int] = (),
                    recent: Sequence[RecentBuyer] = ()) -> dict[str, float]:
    """Write ``customer_id,score,reason`` rows, best first; return counts and customers/s.

    ``promotion``: a stored promotion definition (``items``, ``categories``, ``eligibility``);
    ``eligibility``: rules already checked by ``scoring.audience.check_eligibility``; ``now_day``: "now" for
    re-orders and journey stages (default: the end of the model's data, the API's default clock);
    ``inactive``: item indices never targeted (the service's deactivated items), as the API leaves them out;
    ``recent``: customers who bought since the model's data, their rows replacing the directory's (the API's
    audiences count those purchases too).
    """
    pop = population(artifact)
    if recent:
        pop = with_recent(pop, recent)
    now = artifact.history.now_day if now_day is None else now_day
    index = artifact.item_index
    started = time.perf_counter()
    targets = None
    aggregate = "max"
    kind = "items"
    if promotion is not None:
        targets = promotion_targets(artifact, promotion)
        if not len(targets):
            raise AudienceError(f"promotion {promotion.get('promotion_id')!r} targets no item of model "
                                f"{artifact.version}")
        eligibility = audience.merge_eligibility(promotion.get("eligibility"), eligibility)
    elif items:
        unknown = [i for i in items if i not in index]
        if unknown:
            raise AudienceError(f"unknown item(s) in model {artifact.version}: {', '.join(unknown[:10])}")
        targets = np.unique(np.asarray([index[i] for i in items], dtype=np.int64))
    elif categories:
        cats = _categories(artifact)
        wanted = set(categories)
        missing = sorted(wanted - set(cats))
        if missing:
            raise AudienceError(f"unknown categor(ies) in model {artifact.version}: {', '.join(missing[:10])}")
        targets = np.asarray([k for k, c in enumerate(cats) if c in wanted], dtype=np.int64)
        aggregate = "sum"
    if targets is not None and len(inactive):
        targets = targets[~np.isin(targets, np.fromiter(inactive, dtype=np.int64, count=len(inactive)))]
        if not len(targets) and not due_for_reorder:
            raise AudienceError(f"no active target item in model {artifact.version}: every target is deactivated")
    if lookalike:
        rows = {str(c): k for k, c in enumerate(pop.customer_ids)}
        seeds = [rows[c] for c in dict.fromkeys(lookalike) if c in rows]
        if not seeds:
            raise AudienceError(f"none of the --lookalike customers is in model {artifact.version}")
        scored = audience.lookalike(artifact.item_embeddings, pop, np.asarray(seeds))
        kind = "lookalike"
    elif due_for_reorder:
        scored = audience.due_for_reorder(pop, now, targets)
        kind = "due"
    else:
        assert targets is not None
        scored = audience.item_affinity(artifact.model, pop, targets, aggregate=aggregate)
    seconds = time.perf_counter() - started
    eligible = audience.eligible(pop, audience.merge_eligibility(None, eligibility),
                                 countries=artifact.customers.countries, now_day=now,
                                 stages=stage_rules or StageRules())
    chosen = audience.select(scored.score, size, min_score, eligible)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("customer_id", "score", "reason"))
    for r in chosen.tolist():
        reason = audience.reason(kind, scored, r, lambda i: _label(artifact, i))
        writer.writerow((pop.customer_ids[r], round(float(scored.score[r]), 6), reason))
    return {"customers": len(pop), "written": len(chosen), "seconds": seconds,
            "customers_per_s": len(pop) / max(seconds, 1e-9)}
