"""The use cases behind the promotions and message endpoints (what ``service.usecases.engine`` is for recommendations).

Ties the served model snapshot, the Redis gateway and the domain (``service.domain.promotions``,
``messages``, ``bandit``) together and returns JSON-ready dicts; HTTP stays in ``service.api``.

Hot path of a customer's promotions or message variant: one pipelined read of the customer's keys (record
of the served version, live purchases, session and - for messages - the sticky variant, all in the
customer's hash slot), the model's score row in process memory, then one pipelined write (the Lua scripts
that count impressions against caps and budgets, or record the bandit's decision, plus the sticky record).
Definitions and bandit statistics come from per-process caches refreshed at most every 0.5 s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import redis

from redis_state import keys
from redis_state.codec import array_from_bytes
from scoring.embeddings import customer_embedding
from scoring.history import CustomerRow
from service.domain.customer import CustomerState, purchase_history
from service.domain.profile import STAGES, build_profile
from service.domain.promotion_ranking import Served
from service.domain.targeting import CustomerFacts
from service.infrastructure.bandit_store import Bandit
from service.infrastructure.message_board import MessageBoard
from service.infrastructure.metrics import count_decision, count_impressions
from service.infrastructure.model_store import ModelStore, ServingState
from service.infrastructure.promotion_book import PromotionBook
from service.infrastructure.redis_client import RedisGateway
from service.infrastructure.repository import Repository
from service.usecases.engine import Engine

#: How often every process re-reads definitions and bandit statistics (changes visible within 1 s).
POLL_S = 0.5
#: Clicks and conversions count for a decision this long after it was made.
ATTRIBUTION_DAYS = 7.0


class AppServices(Protocol):
    """What the marketing use cases need of the app (``service.app.factory.Tailor`` provides it)."""

    gateway: RedisGateway
    store: ModelStore
    repository: Repository
    engine: Engine


class Marketing:
    """Promotions and message slots of one app (one per process), over the app's gateway and model store."""

    def __init__(self, tailor: AppServices) -> None:
        self.tailor = tailor
        self.promotions = PromotionBook(poll_s=POLL_S, attribution_days=ATTRIBUTION_DAYS)
        self.messages = MessageBoard(Bandit(poll_s=POLL_S, attribution_days=ATTRIBUTION_DAYS), poll_s=POLL_S)
        self._embeddings: dict[str, np.ndarray | None] = {}
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------------
    @property
    def writes(self) -> redis.Redis:
        """Client for writes and marketing reads (longer timeout)."""
        return self.tailor.gateway.writes

    @property
    def reads(self) -> redis.Redis:
        """Client of the request path's reads (short timeout)."""
        return self.tailor.gateway.reads

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a Redis interaction under the gateway's breaker (``Unavailable`` -> 503)."""
        return self.tailor.gateway.call(fn)

    def item_embeddings(self, version: str) -> np.ndarray | None:
        """The version's item embeddings (bandit context), fetched once per version and process."""
        if version in self._embeddings:
            return self._embeddings[version]
        blob = self.call(lambda: self.tailor.gateway.loads.get(keys.model_blob(version, "item_embeddings")))
        value = None
        if blob:
            try:
                value = np.asarray(array_from_bytes(blob), dtype=np.float32)
            except ValueError:
                value = None
        with self._lock:
            if len(self._embeddings) >= 4:
                self._embeddings.clear()
            self._embeddings[version] = value
        return value

    def _read_customer_and_sticky(self, state: ServingState, customer_id: str, slot_name: str
                                  ) -> tuple[CustomerState, bytes | None]:
        """``Repository.customer``'s reads plus the customer's sticky record of the slot (same hash slot), one
        command."""
        customer, _, (sticky_raw,) = self.tailor.repository.customer_read(
            customer_id, state.model.version, fingerprinted=False,
            extra_keys=[keys.message_sticky(customer_id, slot_name)])
        return customer, sticky_raw

    def _facts(self, state: ServingState, customer: CustomerState, *, embed: bool
               ) -> tuple[CustomerFacts, CustomerRow | None]:
        """What targeting needs about the customer, and their history in the model's items (None if empty).

        The embedding (only the message bandit's context uses it) is computed when ``embed`` is set.
        """
        m = state.model
        engine = self.tailor.engine
        now = engine.now_day(m, customer)
        profile = build_profile(customer, item_ids=m.item_ids, item_index=m.item_index, item_meta=m.item_meta,
                                countries=m.countries, data_end_day=m.data_end_day, now_day=now,
                                rules=engine.rules, top=1)
        history = purchase_history(customer, m.item_index, m.n_items, m.data_end_day, now)
        has_history = len(history.items) > 0
        embedding = None
        if has_history and embed:
            item_embeddings = self.item_embeddings(m.version)
            if item_embeddings is not None and item_embeddings.shape[0] == m.n_items:
                embedding = customer_embedding(item_embeddings, history.items, history.orders)
        top_items = profile["top_items"]
        top_categories = profile["top_categories"]
        facts = CustomerFacts(
            customer_id=customer.customer_id, known=has_history, stage=profile["journey_stage"],
            country=profile["country"], orders=profile["orders"], spend=profile["spend"], embedding=embedding,
            top_category=top_categories[0]["category"] if top_categories else None,
            top_item=(top_items[0]["title"] or top_items[0]["item_id"]) if top_items else None,
        )
        return facts, history if has_history else None

    @staticmethod
    def _scores(state: ServingState, history: CustomerRow | None) -> np.ndarray | None:
        """The customer's score row from the served model (None without a history)."""
        if history is None:
            return None
        return np.asarray(state.model.model.score_row(history), dtype=np.float64)

    # -- promotions -----------------------------------------------------------------------------------
    def put_promotion(self, promotion_id: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        state = self.tailor.store.current()
        promotion, created = self.call(lambda: self.promotions.put(
            self.writes, promotion_id, body, state.model if state else None, STAGES))
        return promotion.to_document(), created

    def get_promotion(self, promotion_id: str) -> dict[str, Any]:
        return self.call(lambda: self.promotions.get(self.writes, promotion_id))[0].to_document()

    def list_promotions(self) -> dict[str, Any]:
        return {"promotions": [p.to_document() for p in self.call(lambda: self.promotions.list(self.writes))]}

    def delete_promotion(self, promotion_id: str, purge: bool) -> None:
        self.call(lambda: self.promotions.delete(self.writes, promotion_id, purge=purge))

    def promotion_report(self, promotion_id: str) -> dict[str, Any]:
        return self.call(lambda: self.promotions.report(self.writes, promotion_id))

    def customer_promotions(self, customer_id: str, n: int, *, preview: bool = False) -> dict[str, Any]:
        """Live, eligible promotions within caps and budgets, best first; serving counts the impressions.

        ``preview``: exactly what serving would answer now (a promotion at its cap or budget left out), with
        nothing written: no impression, no cap or budget use, no decision."""
        state = self.tailor.engine.serving()
        customer = self.tailor.repository.customer(customer_id, state.model.version)
        facts, history = self._facts(state, customer, embed=False)
        scores = self._scores(state, history)
        candidates = self.call(lambda: self.promotions.candidates(self.reads, facts, state.model, scores,
                                                                  state.inactive_set))
        if not candidates:
            served: list[Served] = []
        elif preview:
            served = self.call(lambda: self.promotions.preview(self.writes, candidates, customer_id, n))
        else:
            served = self.call(lambda: self.promotions.serve(self.writes, candidates, customer_id, n))
            count_impressions(s.candidate.promotion.promotion_id for s in served)
        return {"customer_id": customer_id, "model_version": state.model.version,
                "source": "personalized" if scores is not None else "popular",
                "journey_stage": facts.stage, "promotions": [s.to_answer() for s in served]}

    # -- messages -------------------------------------------------------------------------------------
    def put_slot(self, slot: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        defined, created = self.call(lambda: self.messages.put(self.writes, slot, body))
        return defined.to_document(), created

    def get_slot(self, slot: str) -> dict[str, Any]:
        return self.call(lambda: self.messages.get(self.writes, slot))[0].to_document()

    def list_slots(self) -> dict[str, Any]:
        return {"slots": [s.to_document() for s in self.call(lambda: self.messages.list(self.writes))]}

    def delete_slot(self, slot: str, purge: bool) -> None:
        self.call(lambda: self.messages.delete(self.writes, slot, purge=purge))

    def slot_report(self, slot: str) -> dict[str, Any]:
        return self.call(lambda: self.messages.report(self.writes, slot))

    def customer_message(self, customer_id: str, slot_name: str, *, preview: bool = False) -> dict[str, Any]:
        """The slot's variant for the customer, chosen by the bandit (or kept from a sticky decision)."""
        state = self.tailor.engine.serving()
        slot = self.call(lambda: self.messages.live_slot(self.reads, slot_name))
        customer, sticky_raw = self._read_customer_and_sticky(state, customer_id, slot_name)
        facts, history = self._facts(state, customer, embed=True)
        m = state.model

        def values(names: set[str]) -> dict[str, Any]:
            out: dict[str, Any] = {"top_category": facts.top_category, "top_item": facts.top_item,
                                   "country": facts.country, "journey_stage": facts.stage}
            if names & {"recommended_item", "recommended_item_id"}:
                index = self._first_recommendation(state, history, facts.country)
                if index is not None:
                    meta = m.item_meta[index]
                    out["recommended_item"] = meta.get("title") or meta.get("item_id")
                    out["recommended_item_id"] = meta.get("item_id")
            return out

        answer = self.call(lambda: self.messages.decide(self.writes, slot, facts, space=m.version,
                                                        sticky_raw=sticky_raw, values=values, preview=preview))
        if preview:
            return {"customer_id": customer_id, "model_version": m.version, **answer}
        count_decision(slot_name, answer["variant"]["id"], "sticky" if answer["sticky"] else answer["policy"])
        return {"customer_id": customer_id, "model_version": m.version, **answer}

    def _first_recommendation(self, state: ServingState, history: CustomerRow | None,
                              country: str | None) -> int | None:
        """An active item the customer has not bought: their best score, else the most popular."""
        m = state.model
        row = self._scores(state, history)
        if row is not None and history is not None:
            if len(state.inactive):
                row[state.inactive] = -np.inf
            row[history.items] = -np.inf
            best = int(np.argmax(row))
            if np.isfinite(row[best]):
                return best
        found = m.country_popular(country) if country else None
        ranking = found[1] if found is not None else m.popular
        for index in ranking.items.tolist():
            if index not in state.inactive_set:
                return int(index)
        return None

    # -- counters for a metrics exporter ---------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, dict[str, float]]]:
        """Every slot's and promotion's report counters (live and deleted ones), shared by all processes.

        A Prometheus collector can export these on scrape: they live in Redis, so they are correct however
        many API processes serve.
        """
        def read() -> dict[str, dict[str, dict[str, float]]]:
            client = self.writes
            pipe = client.pipeline(transaction=False)
            for key in (keys.MESSAGE_SLOTS, keys.MESSAGE_SLOTS_DELETED, keys.PROMOTIONS, keys.PROMOTIONS_DELETED):
                pipe.hkeys(key)
            slot_live, slot_gone, promo_live, promo_gone = pipe.execute()
            slots = sorted({k.decode() for k in slot_live + slot_gone})
            promos = sorted({k.decode() for k in promo_live + promo_gone})
            for slot in slots:
                pipe.hgetall(keys.message_stats(slot))
            for promo in promos:
                pipe.hgetall(keys.promotion_stats(promo))
            raw = pipe.execute()

            def parse(stats: dict[bytes, bytes]) -> dict[str, float]:
                return {k.decode(): float(v) for k, v in stats.items()}

            return {"messages": {s: parse(r) for s, r in zip(slots, raw[:len(slots)], strict=True)},
                    "promotions": {p: parse(r) for p, r in zip(promos, raw[len(slots):], strict=True)}}

        return self.call(read)


def marketing(tailor: AppServices, extensions: dict[str, Any]) -> Marketing:
    """The app's ``Marketing`` (created on first use)."""
    found = extensions.get("tailor_marketing")
    if found is None:
        found = extensions.setdefault("tailor_marketing", Marketing(tailor))
    return found
