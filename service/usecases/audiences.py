"""Audiences (``POST /v1/audiences``): the customers most likely to buy target items, look-alikes of a seed
set, or customers due to re-order, chosen from every customer published with the served version and every
customer who bought since its data (their purchases received as events count, at most
``TAILOR_AUDIENCE_REFRESH_S`` behind).

Bounded work: the version's customers are loaded once per process (``service.infrastructure.population``,
at most 500,000) and every audience's scores are remembered per (version, targeting) for the next
request (8 entries), so only the first request of a targeting scores all the customers - later ones score
again only the customers whose purchases changed since (``service.infrastructure.recent_buyers``) - in chunks of
``scoring.audience.CHUNK_CELLS`` scores, 1,100-2,300 customers/s on Online Retail's 3,700 items with the
default hybrid model, ~800/s on Ta Feng's 24,000 items, on one core (docs/BENCHMARKS.md). Item, category
and promotion audiences needing more than ``MAX_CELLS`` scores (customers x catalogue, ~15 s of one worker
thread) are refused with a 400 that points at ``tailor audience``, the batch command without the limit;
look-alike and re-order audiences cost one sparse pass and have no such limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from scoring import audience
from scoring.artifact import item_label as _item_label
from scoring.recent_buyers import carried, with_recent
from service.domain.errors import InvalidInput, NotFound
from service.infrastructure.model_store import LoadedModel, ServingState
from service.infrastructure.population import PopulationCache
from service.infrastructure.recent_buyers import RecentBuyers, Snapshot
from service.usecases.marketing import Marketing

#: Largest scoring job one request may start (customers x catalogue items): ~15 s of one worker thread.
MAX_CELLS = 200_000_000
TARGETING = ("items", "categories", "promotion_id", "lookalike", "due_for_reorder")


def item_label(model: LoadedModel, index: int) -> str:
    """An item for people: its title with the id in brackets, or the id alone."""
    return _item_label(model.item_meta[index])


class Audiences:
    """The audience use case of one process."""

    def __init__(self, marketing: Marketing) -> None:
        self.marketing = marketing
        self.population = PopulationCache()
        self.recent = RecentBuyers(marketing.tailor.engine.settings.audience_refresh_s)
        self._merged: tuple[tuple[Any, ...], audience.Population] | None = None
        #: Per item targeting: the latest scores, with the generation and the customers they belong to.
        self._latest: OrderedDict[tuple[Any, ...], tuple[int, np.ndarray, audience.Scored]] = OrderedDict()
        self._scores: OrderedDict[tuple[Any, ...], audience.Scored] = OrderedDict()
        self._lock = threading.Lock()

    def build(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The audience document; its ``customers`` list is ranked best first."""
        given = [name for name in TARGETING if body.get(name) not in (None, False, [], "")]
        kinds = [name for name in given if name != "due_for_reorder"]
        if len(kinds) > 1 or (len(given) > 1 and "lookalike" in given):
            raise InvalidInput(f"give exactly one targeting field; got {' and '.join(given)}",
                               details={"json": {name: ["conflicts with " + ", ".join(g for g in given if g != name)]
                                                 for name in given}})
        if not given:
            raise InvalidInput(f"give one targeting field: {', '.join(TARGETING)}",
                               details={"json": {"_schema": [f"one of {', '.join(TARGETING)} is required"]}})
        size, min_score = body.get("size"), body.get("min_score")
        if size is None and min_score is None:
            raise InvalidInput("give size (1..100000) or min_score",
                               details={"json": {"size": ["give size or min_score"]}})
        tailor = self.marketing.tailor
        state = tailor.engine.serving()
        m = state.model
        now = tailor.engine.now_day(m)
        base, truncated = self.marketing.call(
            lambda: self.population.get(tailor.gateway.loads, m.version, m.n_items, now))
        snapshot = self.marketing.call(lambda: self.recent.get(
            tailor.gateway.loads, m.version, m.item_index, m.item_meta, m.data_end_day))
        population = self._merge(m.version, snapshot, base)
        eligibility = audience.merge_eligibility(None, body.get("eligibility"))
        promotion = None
        if body.get("promotion_id"):
            promotion, _ = self.marketing.call(lambda: self.marketing.promotions.get(
                self.marketing.writes, body["promotion_id"]))
            eligibility = audience.merge_eligibility(promotion.to_document()["eligibility"], eligibility)
        scored, kind = self._scored(state, base, population, snapshot, body, promotion, now)
        eligible = self._eligible(population, m, eligibility, now)
        rows = audience.select(scored.score, size, min_score, eligible)
        customers = [{"customer_id": str(population.customer_ids[r]), "score": round(float(scored.score[r]), 6),
                      "reason": self._reason(m, kind, scored, r)} for r in rows.tolist()]
        answer: dict[str, Any] = {"model_version": m.version, "size": len(customers), "customers": customers}
        if truncated:
            answer["population_truncated"] = True
        return answer

    # -- scoring --------------------------------------------------------------------------------------
    def _merge(self, version: str, snapshot: Snapshot, base: audience.Population) -> audience.Population:
        """The served version's customers with their purchases since its data (one merge per generation)."""
        key = (version, snapshot.generation, id(base))
        with self._lock:
            if self._merged is not None and self._merged[0] == key:
                return self._merged[1]
        merged = with_recent(base, snapshot.buyers)
        with self._lock:
            self._merged = (key, merged)
        return merged

    def _scored(self, state: ServingState, base: audience.Population, population: audience.Population,
                snapshot: Snapshot, body: Mapping[str, Any], promotion: Any, now: float
                ) -> tuple[audience.Scored, str]:
        m = state.model
        generation = snapshot.generation
        blocked = state.inactive
        if body.get("lookalike"):
            seeds = population.customer_ids
            wanted = list(dict.fromkeys(body["lookalike"]))
            positions = np.searchsorted(seeds, np.asarray(wanted, dtype=str))
            positions = np.minimum(positions, max(len(seeds) - 1, 0))
            known = [p for p, c in zip(positions.tolist(), wanted, strict=True) if len(seeds) and seeds[p] == c]
            if not known:
                raise InvalidInput("none of the lookalike customers has a purchase history in model "
                                   f"{m.version}", details={"json": {"lookalike": ["no known customer"]}})
            key = ("lookalike", m.version, generation, tuple(sorted(known)))
            return self._remember(key, lambda: self._lookalike(m, population, np.asarray(known))), "lookalike"
        targets, aggregate = self._targets(state, body, promotion)
        if len(blocked):
            targets = targets[~np.isin(targets, blocked)] if targets is not None else None
        if body.get("due_for_reorder"):
            # "Now" is in the key: with TAILOR_CLOCK=wall customers fall due as days pass (to ~1.5 minutes).
            key = ("due", m.version, generation, round(now, 3), None if targets is None else tuple(targets.tolist()))
            return self._remember(key, lambda: audience.due_for_reorder(population, now, targets)), "due"
        assert targets is not None
        if not len(targets):
            raise InvalidInput("no active target item", details={"json": {"items": ["no active target item"]}})
        if len(base) * m.n_items > MAX_CELLS:
            raise InvalidInput(f"{len(base):,} customers x {m.n_items:,} items is more than one request may "
                               "score; use `tailor audience` for this catalogue")

        def affinity(customers: audience.Population) -> audience.Scored:
            return audience.item_affinity(m.model, customers, targets, aggregate=aggregate)

        key = ("items", m.version, aggregate, tuple(targets.tolist()))
        return self._carried(key, base, population, snapshot, affinity), "items"

    def _carried(self, key: tuple[Any, ...], base: audience.Population, population: audience.Population,
                 snapshot: Snapshot, affinity: Callable[[audience.Population], audience.Scored]) -> audience.Scored:
        """Item affinities of ``population``, scoring again only the customers whose data changed: since the
        latest scores of this targeting when the snapshot still knows what changed since, else since the
        published records (whose scores are remembered too)."""
        with self._lock:
            latest = self._latest.get(key)
        if latest is not None and latest[0] == snapshot.generation:
            return latest[2]
        # A request holding an older snapshot than the latest scores (a concurrent one read a newer) starts from
        # the published records, as when the snapshot no longer knows what changed.
        newer = latest is not None and latest[0] < snapshot.generation
        changed = snapshot.changed_since(latest[0]) if latest is not None and newer else None
        if latest is not None and changed is not None:
            _, old_ids, old = latest
            stale = np.isin(population.customer_ids, np.asarray(sorted(changed), dtype=str))
        else:
            old, old_ids = self._remember(key, lambda: affinity(base)), base.customer_ids
            stale = np.isin(population.customer_ids, np.asarray([b.customer_id for b in snapshot.buyers], dtype=str))
        scored = carried(old, old_ids, population, stale, affinity)
        with self._lock:
            current = self._latest.get(key)
            if current is None or current[0] < snapshot.generation:
                self._latest[key] = (snapshot.generation, population.customer_ids, scored)
            self._latest.move_to_end(key)
            while len(self._latest) > 8:
                self._latest.popitem(last=False)
        return scored

    def _targets(self, state: ServingState, body: Mapping[str, Any], promotion: Any
                 ) -> tuple[np.ndarray | None, str]:
        m = state.model
        if promotion is not None:
            if not promotion.items and not promotion.categories:  # site-wide: every item
                return np.arange(m.n_items, dtype=np.int64), "max"
            return self.marketing.promotions.index.targets(promotion, m, np.empty(0, dtype=np.int64)), "max"
        if body.get("items"):
            unknown = [i for i in body["items"] if i not in m.item_index]
            if unknown:
                raise InvalidInput(f"unknown item(s) in model {m.version}: {', '.join(unknown[:10])}",
                                   details={"json": {"items": [f"unknown: {', '.join(unknown[:10])}"]}})
            return np.unique(np.asarray([m.item_index[i] for i in body["items"]], dtype=np.int64)), "max"
        if body.get("categories"):
            missing = [c for c in body["categories"] if c not in m.category_index]
            if missing:
                raise InvalidInput(f"unknown categor(ies) in model {m.version}: {', '.join(missing[:10])}",
                                   details={"json": {"categories": [f"unknown: {', '.join(missing[:10])}"]}})
            codes = [m.category_index[c] for c in body["categories"]]
            return np.flatnonzero(np.isin(m.category_codes, codes)).astype(np.int64), "sum"
        return None, "max"  # due for re-order of any item

    def _lookalike(self, m: LoadedModel, population: audience.Population, seeds: np.ndarray) -> audience.Scored:
        embeddings = self.marketing.item_embeddings(m.version)
        if embeddings is None or embeddings.shape[0] != m.n_items:
            raise NotFound(f"model {m.version} was published without item embeddings; look-alikes need them")
        return audience.lookalike(embeddings, population, seeds)

    def _remember(self, key: tuple[Any, ...], compute: Any) -> audience.Scored:
        with self._lock:
            found = self._scores.get(key)
            if found is not None:
                self._scores.move_to_end(key)
                return found
        value = compute()
        with self._lock:
            self._scores[key] = value
            while len(self._scores) > 8:
                self._scores.popitem(last=False)
        return value

    # -- eligibility and reasons ----------------------------------------------------------------------
    def _eligible(self, population: audience.Population, m: LoadedModel, rules: Mapping[str, Any],
                  now: float) -> np.ndarray | None:
        """The promotions' eligibility rules over every customer at once (None = everybody)."""
        return audience.eligible(population, rules, countries=m.countries, now_day=now,
                                 stages=self.marketing.tailor.engine.rules)

    @staticmethod
    def _reason(m: LoadedModel, kind: str, scored: audience.Scored, row: int) -> str:
        return audience.reason(kind, scored, row, lambda index: item_label(m, index))


def audiences(marketing: Marketing, extensions: dict[str, Any]) -> Audiences:
    found = extensions.get("tailor_audiences")
    if found is None:
        found = extensions.setdefault("tailor_audiences", Audiences(marketing))
    return found


__all__: Sequence[str] = ("Audiences", "audiences", "item_label")
