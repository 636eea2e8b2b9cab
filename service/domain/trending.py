"""Trending items: what is rising in the live events compared with its usual rate (pure rules).

Events (``purchase`` 3, ``add_to_cart`` 2, ``view`` 1) are counted per item in time buckets, with the
customer's group (country and segment values of their published record; None for customers the model does
not know) so that a segment's trend is counted from its own customers' events. A request sums the buckets
of its window, each decayed by its age (half-life a third of the window), and compares every item with
what it would have got had the same volume followed the model's usual popularity (recent distinct buyers
of the training data, smoothed): items above that expectation rank by their lift ``observed / (expected +
PRIOR)`` - a best seller must rise well above its usual volume, a rarely bought item needs a few events
before it counts as rising. Too few events in the window: the answer is the
(segment's) recent popularity list instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

#: How much each event type says about an item's momentum.
TYPE_WEIGHTS = {"purchase": 3.0, "add_to_cart": 2.0, "view": 1.0}
#: Bucket width of the counts (seconds): the finest age resolution of the decay.
BUCKET_S = 300
#: Longest window a request may ask for (hours); older buckets are dropped.
MAX_WINDOW_HOURS = 168
#: Fewer weighted events than this in the window: answer recent popularity instead.
MIN_WEIGHTED_EVENTS = 10.0
#: An item needs at least this decayed weight to be called rising.
MIN_ITEM_WEIGHT = 2.0
#: Pseudo-count added to every expectation: damps the lift of items with very few events.
PRIOR = 2.0
#: Rising means at least this many times the expected weight.
MIN_LIFT = 1.5
#: Usual share of an item nobody bought recently, in recent buyers.
TAIL_BUYERS = 0.1

Group = tuple[int, tuple[int, ...]] | None  # (country index, segment value indices) of a known customer


@dataclass
class TrendCounts:
    """Weighted event counts per (bucket, item index, customer group); one per process, fed by the stream."""

    buckets: dict[int, dict[tuple[int, Group], list[float]]] = field(default_factory=dict)

    def add(self, received_at: float, item: int, group: Group, weight: float) -> None:
        cell = self.buckets.setdefault(int(received_at // BUCKET_S), {}).setdefault((item, group), [0.0, 0.0])
        cell[0] += weight
        cell[1] += 1.0

    def prune(self, now: float) -> None:
        oldest = int((now - MAX_WINDOW_HOURS * 3600) // BUCKET_S)
        for bucket in [b for b in self.buckets if b < oldest]:
            del self.buckets[bucket]

    def observed(self, now: float, window_hours: float,
                 admits: Callable[[Group], bool] | None = None) -> tuple[dict[int, float], dict[int, int], float]:
        """(item -> decayed weight, item -> events, total weight without decay) over the window."""
        half_life = window_hours * 3600.0 / 3.0
        start = now - window_hours * 3600.0
        decayed: dict[int, float] = {}
        events: dict[int, int] = {}
        total = 0.0
        for bucket, cells in self.buckets.items():
            middle = (bucket + 0.5) * BUCKET_S
            if (bucket + 1) * BUCKET_S <= start:
                continue
            factor = 0.5 ** (max(now - middle, 0.0) / half_life)
            for (item, group), (weight, count) in cells.items():
                if admits is not None and not admits(group):
                    continue
                decayed[item] = decayed.get(item, 0.0) + weight * factor
                events[item] = events.get(item, 0) + int(count)
                total += weight
        return decayed, events, total


@dataclass(frozen=True)
class Rising:
    item: int
    score: float
    lift: float
    events: int


def usual_share(n_items: int, popular_items: np.ndarray, popular_scores: np.ndarray) -> np.ndarray:
    """Each item's usual share of the activity: recent distinct buyers of the training data, plus
    ``TAIL_BUYERS`` (so that an item nobody bought recently still has a small expectation)."""
    counts = np.full(n_items, TAIL_BUYERS, dtype=np.float64)
    if len(popular_items):
        counts[np.asarray(popular_items, dtype=np.int64)] += np.asarray(popular_scores, dtype=np.float64)
    return counts / counts.sum()


def rising(decayed: dict[int, float], events: dict[int, int], share: np.ndarray,
           blocked: Callable[[int], bool]) -> list[Rising]:
    """Items above their usual rate, best first by lift: observed / (expected + PRIOR)."""
    volume = sum(decayed.values())
    out = []
    for item, seen in decayed.items():
        if seen < MIN_ITEM_WEIGHT or blocked(item):
            continue
        expected = volume * float(share[item])
        if seen < MIN_LIFT * expected:
            continue
        out.append(Rising(item, round(seen / (expected + PRIOR), 6), seen / max(expected, 1e-9), events[item]))
    out.sort(key=lambda r: (-r.score, -r.events, r.item))
    return out


def reason(r: Rising, window_hours: float) -> str:
    times = "many times" if r.lift >= 100 else f"{r.lift:.1f}x"
    return (f"rising: {r.events} event{'s' if r.events != 1 else ''} in the last {window_hours:g} h, "
            f"{times} its usual rate")


def segment_admits(groups: Iterable[tuple[int, int]]) -> Callable[[Group], bool]:
    """A group filter: ``(-1, country index)`` for a country, ``(column, value index)`` for a segment column."""
    wanted = list(groups)

    def admits(group: Group) -> bool:
        if group is None:
            return False
        country, values = group
        for column, value in wanted:
            if column < 0:
                if country != value:
                    return False
            elif column >= len(values) or values[column] != value:
                return False
        return True

    return admits
