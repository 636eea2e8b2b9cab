"""`tailor audience`: the audience of ``POST /v1/audiences`` in batch, over every customer of a model directory.

The arithmetic is ``scoring.audience`` (the service's), vectorised over customers in chunks; the command
reports customers scored per second.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from scoring import audience
from scoring.artifact import Artifact, item_label


class AudienceError(ValueError):
    """Bad targeting (unknown items, categories or seeds): a one-line message for the user."""


def population(artifact: Artifact) -> audience.Population:
    c = artifact.customers
    return audience.Population(np.asarray(artifact.customer_ids, dtype=str), artifact.history,
                               np.asarray(c.orders), np.asarray(c.spend), np.asarray(c.first_day),
                               np.asarray(c.last_day), np.asarray(c.country))


def _label(artifact: Artifact, index: int) -> str:
    return item_label(artifact.items[index] if index < len(artifact.items) else {}, str(artifact.item_ids[index]))


def export_audience(artifact: Artifact, out: TextIO, *, items: Sequence[str] = (), categories: Sequence[str] = (),
                    lookalike: Sequence[str] = (), due_for_reorder: bool = False, size: int | None = None,
                    min_score: float | None = None) -> dict[str, float]:
    """Write ``customer_id,score,reason`` rows, best first; return counts and customers/s."""
    pop = population(artifact)
    index = {str(i): k for k, i in enumerate(artifact.item_ids)}
    started = time.perf_counter()
    targets = None
    kind = "items"
    if items:
        unknown = [i for i in items if i not in index]
        if unknown:
            raise AudienceError(f"unknown item(s) in model {artifact.version}: {', '.join(unknown[:10])}")
        targets = np.unique(np.asarray([index[i] for i in items], dtype=np.int64))
    elif categories:
        cats = [str(m.get("category")) if m.get("category") is not None else None for m in artifact.items]
        wanted = set(categories)
        missing = sorted(wanted - set(cats))
        if missing:
            raise AudienceError(f"unknown categor(ies) in model {artifact.version}: {', '.join(missing[:10])}")
        targets = np.asarray([k for k, c in enumerate(cats) if c in wanted], dtype=np.int64)
    if lookalike:
        rows = {str(c): k for k, c in enumerate(pop.customer_ids)}
        seeds = [rows[c] for c in dict.fromkeys(lookalike) if c in rows]
        if not seeds:
            raise AudienceError(f"none of the --lookalike customers is in model {artifact.version}")
        scored = audience.lookalike(artifact.item_embeddings, pop, np.asarray(seeds))
        kind = "lookalike"
    elif due_for_reorder:
        scored = audience.due_for_reorder(pop, artifact.history.now_day, targets)
        kind = "due"
    else:
        assert targets is not None
        scored = audience.item_affinity(artifact.model, pop, targets, aggregate="sum" if categories else "max")
    seconds = time.perf_counter() - started
    chosen = audience.select(scored.score, size, min_score)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("customer_id", "score", "reason"))
    for r in chosen.tolist():
        if kind == "lookalike":
            reason = f"buys like the seed customers (similarity {scored.score[r]:.2f})"
        elif kind == "due":
            assert scored.extra is not None
            late, period = scored.extra[r]
            reason = (f"due to re-order {_label(artifact, int(scored.item[r]))}: {late:.0f} days overdue "
                      f"(re-orders about every {period:.0f} days)")
        elif scored.bought[r] > 0:
            n = int(scored.bought[r])
            reason = f"bought {_label(artifact, int(scored.item[r]))} in {n} order{'s' if n != 1 else ''}"
        else:
            reason = f"predicted to like {_label(artifact, int(scored.item[r]))}"
        writer.writerow((pop.customer_ids[r], round(float(scored.score[r]), 6), reason))
    return {"customers": len(pop), "written": len(chosen), "seconds": seconds,
            "customers_per_s": len(pop) / max(seconds, 1e-9)}
