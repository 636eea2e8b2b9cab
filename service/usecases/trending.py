"""The use case behind ``GET /v1/trending``: items rising in the live events against their usual rate.

Each process reads the events stream incrementally (``EventTail``) and keeps decayed counts per item; the
rising items are compared with the served model's recent popularity, which is also the answer when the
window holds too few events. It shares the serving snapshot and the answer shaping of ``Engine``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from service.domain import trending
from service.domain.errors import Unavailable
from service.domain.ranking import rank_list
from service.infrastructure.event_tail import EventTail
from service.infrastructure.metrics import count_fallback
from service.infrastructure.model_store import LoadedModel
from service.infrastructure.repository import Repository
from service.usecases.engine import SOURCE_POPULAR, Engine

SOURCE_TRENDING = "trending"
#: The most a trending answer lags the events stream (seconds): each process re-reads it at most this often.
TRENDING_REFRESH_S = 5.0


class TrendingItems:
    """Trending answers of this process, from its own incremental read of the events stream."""

    def __init__(self, engine: Engine, repository: Repository) -> None:
        self.engine = engine
        self.events = EventTail(repository.gateway, TRENDING_REFRESH_S)

    def answer(self, *, n: int, window_hours: float = 24.0, segment: str | None = None) -> dict[str, Any]:
        """Items rising in the live events of the last ``window_hours`` (of ``segment``'s customers) against
        their usual rate; the (segment's) recent popularity when there are too few events.

        Counts lag the events by at most ``TRENDING_REFRESH_S``; when Redis does not answer, the counts this
        process already holds are used."""
        engine = self.engine
        state = engine.serving()
        m = state.model
        filters = engine.filters(state, (), None, None)
        ranking, label, admits = m.popular, "global", None
        if segment is not None:
            found = m.segment_popular(segment)
            if found is not None:
                name, value, ranking = found
                label = f"{name}:{value}"
                try:
                    admits = trending.segment_admits([_segment_group(m, name, value)])
                except ValueError:  # a list without its value in the version's index: nobody counts
                    admits = _nobody
        try:
            self.events.refresh(m.version, m.item_index)
        except Unavailable:
            count_fallback()
        decayed, events, total = self.events.counts.observed(time.time(), window_hours, admits)
        refreshed = self.events.refreshed_at
        head = {"model_version": m.version, "segment": label, "window_hours": window_hours,
                "events": int(sum(events.values())), "lag_s": TRENDING_REFRESH_S,
                "as_of": None if refreshed is None else _iso(refreshed)}
        blocked = set(filters.blocked.tolist()) if len(filters.blocked) else set()
        risers = [] if total < trending.MIN_WEIGHTED_EVENTS else trending.rising(
            decayed, events, trending.usual_share(m.n_items, ranking.items, ranking.scores), blocked.__contains__)
        if not risers:
            text = "popular recently (few live events to tell what is rising)"
            idx, scores = rank_list(ranking.items, ranking.scores, n, filters, m.category_codes)
            return {**head, "source": SOURCE_POPULAR, "items": engine.scored_items(m, idx, scores, lambda _i: text)}
        top = risers[:n]
        reasons = {r.item: trending.reason(r, window_hours) for r in top}
        items = engine.scored_items(m, np.asarray([r.item for r in top], dtype=np.int64),
                                    np.asarray([r.score for r in top], dtype=np.float64), reasons.__getitem__)
        return {**head, "source": SOURCE_TRENDING, "items": items}


def _segment_group(model: LoadedModel, name: str, value: str) -> tuple[int, int]:
    """(column, value index) of a customer group filter: column -1 is the country."""
    if name in model.segments:
        return list(model.segments).index(name), model.segments[name].index(value)
    return -1, model.countries.index(value)


def _nobody(_group: object) -> bool:
    return False


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
