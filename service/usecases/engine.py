"""The use cases behind the endpoints: recommendations, similar items, popular lists, profiles, events
(trending items: ``service.usecases.trending``).

It ties the serving snapshot of the model store, the Redis repository and the pure domain functions
together and returns plain JSON-ready dicts (recommendation answers, which are memoised, as their JSON
document); HTTP (parsing, auth, status codes) stays in ``service.api``.

Hot path of a customer's recommendations: one snapshot read, the customer from the worker's cache or one
Lua read, then the remembered answer if that data is unchanged, else one ``model.score_row`` of the
customer's history, an in-place mask and an exact top-k, ``explain_row`` for the n results.
When Redis does not answer (or the circuit is open) the answer comes from the popular list held in
process memory, marked ``popular-fallback``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scoring.artifact import item_label
from scoring.history import SECONDS_PER_DAY, CustomerRow
from service.domain.customer import CustomerState, answer_basis, basket_history, purchase_history
from service.domain.errors import NoActiveModel, NotFound, Unavailable
from service.domain.events import Event
from service.domain.profile import StageRules, build_profile
from service.domain.ranking import (
    Filters,
    answer_scores,
    rank_list,
    rank_scores,
    reason_text,
    resolve_filters,
)
from service.infrastructure.answer_memo import FINGERPRINT_BYTES, Answer, AnswerMemo, SharedAnswers, encode
from service.infrastructure.metrics import (
    OUTCOME_COMPUTED,
    OUTCOME_MEMO,
    OUTCOME_SHARED,
    count_answer,
    count_fallback,
)
from service.infrastructure.model_store import LoadedModel, ModelStore, PopularList, ServingState
from service.infrastructure.repository import IngestResult, Repository
from settings import Settings

SOURCE_PERSONALIZED = "personalized"
SOURCE_SESSION = "session"
SOURCE_POPULAR = "popular"
SOURCE_FALLBACK = "popular-fallback"
SOURCE_BASKET = "basket"
SOURCE_SIMILAR = "similar-items"


class Engine:
    """Stateless per request; holds the store, the repository and the settings of this process."""

    def __init__(self, store: ModelStore, repository: Repository, settings: Settings) -> None:
        self.store = store
        self.repository = repository
        self.settings = settings
        self.rules = StageRules(settings.lapsed_days, settings.repeat_min_orders)
        self.answers: AnswerMemo[Answer] = AnswerMemo(settings.answer_cache_size)
        # Per customer, their history row and what the model derived from it (``ItemScores.row_constants``), so
        # that re-ranking a page scores only its items; keyed by the fingerprint of the customer's data, like answers.
        self.customer_rows: AnswerMemo[tuple[CustomerRow, Any]] = AnswerMemo(settings.answer_cache_size)
        self.shared = SharedAnswers(settings)
        # With the wall clock "now" moves between requests, so an answer is no function of its inputs alone.
        self.memoise = settings.clock == "data" and settings.answer_cache_size > 0
        self._derived: dict[tuple[str, str], np.ndarray] = {}

    # -- helpers --------------------------------------------------------------------------------------
    def serving(self) -> ServingState:
        state = self.store.current()
        if state is None:
            raise NoActiveModel("no model version is active yet: publish one with `tailor publish`")
        return state

    def now_day(self, model: LoadedModel, customer: CustomerState | None = None) -> float:
        """"Now" for recency and journey stages (see TAILOR_CLOCK)."""
        if self.settings.clock == "wall":
            return time.time() / SECONDS_PER_DAY
        latest = customer.latest_day() if customer is not None else None
        return max(model.data_end_day, latest or 0.0)

    @staticmethod
    def scored_items(model: LoadedModel, idx: np.ndarray, scores: np.ndarray,
               reason: Callable[[int], str | None] | None) -> list[dict[str, Any]]:
        meta = model.item_meta
        return [{**meta[i], "score": s, "reason": reason(i) if reason else None}
                for i, s in zip(idx.tolist(), answer_scores(scores), strict=True)]

    def filters(self, state: ServingState, exclude: Sequence[str], category: str | None,
                 exclude_category: str | None) -> Filters:
        m = state.model
        return resolve_filters(inactive=state.inactive, exclude_ids=exclude, item_index=m.item_index,
                               category_index=m.category_index, category=category,
                               exclude_category=exclude_category)

    def _popular_answer(self, state: ServingState, n: int, filters: Filters, source: str,
                        country: str | None = None, segment: str | None = None) -> dict[str, Any]:
        """The popular list of ``segment`` (``NAME:VALUE``), else of ``country``, else the global one: each
        only where the data had enough customers in it."""
        m = state.model
        ranking: PopularList = m.popular
        label, text = "global", "popular right now"
        found = m.segment_popular(segment) if segment is not None else None
        if found is not None:
            name, value, ranking = found
            label = f"{name}:{value}"
            text = f"popular in {value}" if name == "country" else f"popular with {name} {value}"
        elif country is not None and (by_country := m.country_popular(country)) is not None:
            spelt, ranking = by_country
            label, text = f"country:{spelt}", f"popular in {spelt}"
        idx, scores = rank_list(ranking.items, ranking.scores, n, filters, m.category_codes)
        return {"model_version": m.version, "source": source, "segment": label,
                "items": self.scored_items(m, idx, scores, lambda _i: text)}

    def _scored(self, state: ServingState, history: CustomerRow, n: int, filters: Filters,
                phrase: Callable[[int], str], *, discovery: bool = False) -> list[dict[str, Any]]:
        """The top ``n`` items of ``history``'s score row that pass ``filters``, with reasons; ``discovery``
        says that the filters block every item of the history (the model may skip what scores only those)."""
        m = state.model
        model = m.model
        scores = model.discovery_row(history) if discovery else model.score_row(history)
        idx, values = rank_scores(scores, n, filters, m.category_codes)
        reasons = model.explain_discovery(history, idx) if discovery else model.explain_row(history, idx)
        labels = self.item_labels(m)
        texts = {int(i): reason_text(r, labels, phrase) for i, r in zip(idx.tolist(), reasons, strict=True)}
        return self.scored_items(m, idx, values, texts.__getitem__)

    def item_labels(self, model: LoadedModel) -> np.ndarray:
        """Item index -> "TITLE (ID)" (the id alone without a title): how reasons name related items."""
        return self._of_version(model, "labels", lambda: np.asarray(
            [item_label(meta) for meta in model.item_meta], dtype=object))

    def popular_scores(self, model: LoadedModel) -> np.ndarray:
        """Item index -> 1 + its score in the global popular list, 0 for items not in it (``rank_items``)."""
        def build() -> np.ndarray:
            scores = np.zeros(model.n_items, dtype=np.float64)
            scores[model.popular.items] = np.asarray(model.popular.scores, dtype=np.float64) + 1.0
            return scores
        return self._of_version(model, "popular", build)

    def _of_version(self, model: LoadedModel, name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
        """A read-only array derived from ``model``, built once per version (the last few versions kept)."""
        key = (model.version, name)
        found = self._derived.get(key)
        if found is None:
            found = build()
            found.flags.writeable = False
            if len(self._derived) >= 8:
                self._derived.clear()
            self._derived[key] = found
        return found

    # -- recommendations ------------------------------------------------------------------------------
    def for_customer(self, customer_id: str, *, n: int, exclude_purchased: bool = False,
                     exclude: Sequence[str] = (), category: str | None = None,
                     exclude_category: str | None = None) -> Answer:
        """Personalized for known customers, session-based for unknown ones with events, else popular.

        Like every memoised answer, returned as its JSON document (see ``service.infrastructure.answer_memo``)."""
        state = self.serving()
        m = state.model
        key = ("customer", customer_id, n, exclude_purchased, tuple(exclude), category, exclude_category)
        try:  # the shared answer's name is worked out only when the customer is read from Redis
            customer, seen, shared = self.repository.customer_read(
                customer_id, m.version, fingerprinted=self.memoise,
                answer_field=(lambda: self.shared.field(state, key)) if self.memoise else None)
        except Unavailable:
            count_fallback()
            filters = self.filters(state, exclude, category, exclude_category)
            return encode({"customer_id": customer_id, **self._popular_answer(state, n, filters, SOURCE_FALLBACK)})
        if seen is None:
            filters = self.filters(state, exclude, category, exclude_category)
            return encode(self._customer_answer(state, customer, n, exclude_purchased, filters))
        answer = self.answers.get(state, key, seen)
        if answer is not None:
            count_answer(OUTCOME_MEMO)
            return answer
        if shared:
            stored = shared[0]
        else:  # the customer came from the worker's cache: another process may have computed the answer
            stored = self.repository.shared_answer(customer_id, m.version, self.shared.field(state, key))
        if stored is not None and stored[:FINGERPRINT_BYTES] == seen:
            count_answer(OUTCOME_SHARED)
            answer = stored[FINGERPRINT_BYTES:]
        else:
            count_answer(OUTCOME_COMPUTED)
            filters = self.filters(state, exclude, category, exclude_category)
            answer = encode(self._customer_answer(state, customer, n, exclude_purchased, filters))
            if self.memoise and customer.known:  # real customers only: random ids create no keys
                self.repository.store_answer(customer_id, m.version, self.shared.field(state, key), seen + answer)
        self.answers.put(state, key, answer, seen)
        return answer

    def _customer_answer(self, state: ServingState, customer: CustomerState, n: int, exclude_purchased: bool,
                         filters: Filters) -> dict[str, Any]:
        m = state.model
        customer_id = customer.customer_id
        if not customer.known and not customer.has_events:
            return {"customer_id": customer_id, **self._popular_answer(state, n, filters, SOURCE_POPULAR)}
        basis = answer_basis(customer, m.item_index, m.n_items, m.data_end_day, self.now_day(m, customer),
                             exclude_purchased)
        if basis.session:
            bought_set = set(basis.bought.tolist())
            phrase: Callable[[int], str] = lambda i: "you ordered" if i in bought_set else "you viewed"  # noqa: E731
        else:
            phrase = _you_ordered
        if len(basis.blocked):
            filters = filters.with_blocked(basis.blocked)
        items = self._scored(state, basis.history, n, filters, phrase,
                             discovery=exclude_purchased and not basis.session)
        return {"customer_id": customer_id, "model_version": m.version,
                "source": SOURCE_SESSION if basis.session else SOURCE_PERSONALIZED, "items": items}

    def for_basket(self, items: Sequence[str], *, n: int, exclude: Sequence[str] = (),
                   category: str | None = None, exclude_category: str | None = None) -> Answer:
        """Recommendations from the given items alone (anonymous visitor, basket); basket items excluded.

        Remembered per set of known items: order, repeats and unknown ids do not change the answer."""
        state = self.serving()
        index = state.model.item_index
        basket = np.asarray(sorted({index[i] for i in items if i in index}), dtype=np.int64)
        key = ("basket", tuple(basket.tolist()), n, tuple(exclude), category, exclude_category)
        answer = self.answers.get(state, key) if self.memoise else None
        if answer is None:
            answer = encode(self._basket_answer(state, basket, n, exclude, category, exclude_category))
            if self.memoise:
                self.answers.put(state, key, answer)
        return answer

    def _basket_answer(self, state: ServingState, basket: np.ndarray, n: int, exclude: Sequence[str],
                       category: str | None, exclude_category: str | None) -> dict[str, Any]:
        m = state.model
        filters = self.filters(state, exclude, category, exclude_category).with_blocked(basket)
        if not len(basket):
            return self._popular_answer(state, n, filters, SOURCE_POPULAR)
        history = basket_history(basket, m.n_items, self.now_day(m))
        answer = self._scored(state, history, n, filters, _in_your_basket, discovery=True)
        return {"model_version": m.version, "source": SOURCE_BASKET, "items": answer}

    def rank_items(self, customer_id: str, items: Sequence[str]) -> dict[str, Any]:
        """``items`` reordered for the customer: known items by the customer's scores (popularity for a customer
        without history, or when Redis does not answer), then unknown items in their given order."""
        state = self.serving()
        m = state.model
        ids = list(dict.fromkeys(items))
        found_at = list(map(m.item_index.get, ids))
        unknown = [i for i, at in zip(ids, found_at, strict=True) if at is None]
        idx = np.asarray([at for at in found_at if at is not None] if unknown else found_at, dtype=np.int64)
        source, seen = SOURCE_PERSONALIZED, None
        try:
            customer, seen, _ = self.repository.customer_read(customer_id, m.version, fingerprinted=self.memoise)
        except Unavailable:
            count_fallback()
            customer, source = None, SOURCE_FALLBACK
        personal = customer is not None and (customer.known or customer.has_events)
        if personal:
            source = SOURCE_PERSONALIZED if customer.known else SOURCE_SESSION
        elif customer is not None:
            source = SOURCE_POPULAR
        texts: list[str | None]
        if personal and len(idx):
            # The customer's history and what the model derived from it, remembered per fingerprint of their data.
            remembered = self.customer_rows.get(state, customer_id, seen) if seen is not None else None
            if remembered is None:
                history = self._history(m, customer)
                found = m.model.score_items(history, idx)
                if seen is not None:
                    self.customer_rows.put(state, customer_id, (history, found.row_constants), seen)
            else:
                found = m.model.score_items(remembered[0], idx, remembered[1])
            scores = found.scores.astype(np.float64)
            order = np.argsort(-scores, kind="stable")
            idx, scores = idx[order], scores[order]
            phrase = _you_ordered if customer.known else _you_viewed
            labels, reasons = self.item_labels(m), found.reasons
            texts = [reason_text(reasons[k], labels, phrase) for k in order.tolist()]
        else:
            scores = self.popular_scores(m)[idx]
            order = np.argsort(-scores, kind="stable")
            idx, scores = idx[order], scores[order]
            texts = ["popular right now" if s > 0 else None for s in scores.tolist()]
        meta = m.item_meta
        answer = [{**meta[i], "score": s, "reason": t}
                  for i, s, t in zip(idx.tolist(), answer_scores(scores), texts, strict=True)]
        answer += [{"item_id": i, "title": None, "price": None, "category": None, "score": None,
                    "reason": "not in the model's catalogue: kept in the given order"} for i in unknown]
        return {"customer_id": customer_id, "model_version": m.version, "source": source, "items": answer}

    def remember_rows(self, state: ServingState, customer_id: str, customer: CustomerState, seen: bytes) -> bool:
        """Derive a known customer's scoring rows before their first page and remember them under ``seen``, as
        ``rank_items`` would (``service.usecases.read_ahead``); False when the memo is off, full or has them."""
        if not self.memoise or not customer.known or self.customer_rows.get(state, customer_id, seen) is not None:
            return False
        if len(self.customer_rows) >= self.customer_rows.max_entries:
            return False
        history = self._history(state.model, customer)
        self.customer_rows.put(state, customer_id, (history, state.model.model.row_constants(history)), seen,
                               evict=False)
        return True

    def _history(self, m: LoadedModel, customer: CustomerState) -> CustomerRow:
        """The row ``rank_items`` scores: published history + live purchases (+ the session for a customer
        the model does not know)."""
        return purchase_history(customer, m.item_index, m.n_items, m.data_end_day, self.now_day(m, customer),
                                include_session=not customer.known)

    def similar(self, item_id: str, *, n: int) -> Answer:
        """Items bought by the same customers; 404 for an item the model does not know."""
        state = self.serving()
        index = _index_of(state.model, item_id)
        key = ("similar", index, n)
        answer = self.answers.get(state, key)
        if answer is None:
            answer = encode(self._similar_answer(state, item_id, index, n))
            self.answers.put(state, key, answer)
        return answer

    def _similar_answer(self, state: ServingState, item_id: str, index: int, n: int) -> dict[str, Any]:
        m = state.model
        extra = min(len(state.inactive), 1000)
        idx, scores = m.model.similar_items(index, n + extra)
        idx, scores = np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        idx, scores = rank_list(idx, scores, n, Filters(state.inactive), m.category_codes)
        # The anchor by its label, as every other reason names items ("TITLE (ID)"), not by its bare id.
        text = f"customers who bought {self.item_labels(m)[index]} also bought this"
        return {"item_id": item_id, "model_version": m.version, "source": SOURCE_SIMILAR,
                "items": self.scored_items(m, idx, scores, lambda _i: text)}

    def popular(self, *, n: int, country: str | None = None, category: str | None = None,
                segment: str | None = None) -> dict[str, Any]:
        state = self.serving()
        filters = self.filters(state, (), category, None)
        return self._popular_answer(state, n, filters, SOURCE_POPULAR, country=country, segment=segment)

    # -- customers and events -------------------------------------------------------------------------
    def profile(self, customer_id: str) -> dict[str, Any]:
        """Needs Redis (no meaningful fallback): ``Unavailable`` -> 503."""
        state = self.serving()
        m = state.model
        customer = self.repository.customer(customer_id, m.version)
        return {"model_version": m.version, **build_profile(
            customer, item_ids=m.item_ids, item_index=m.item_index, item_meta=m.item_meta,
            countries=m.countries, data_end_day=m.data_end_day, now_day=self.now_day(m, customer),
            rules=self.rules, segments=m.segments)}

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        return self.repository.ingest(events)

    # -- items ----------------------------------------------------------------------------------------
    def item(self, item_id: str) -> dict[str, Any]:
        state = self.serving()
        m = state.model
        index = _index_of(m, item_id)
        return {**m.item_meta[index], "active": index not in state.inactive_set, "model_version": m.version}

    def set_item_active(self, item_id: str, active: bool) -> dict[str, Any]:
        """Admin: (de)activate an item everywhere; this process applies it at once, others within a poll."""
        _index_of(self.serving().model, item_id)
        override = self.repository.set_item_override(item_id, active)
        self.store.apply_override(item_id, override)
        return self.item(item_id)


def _index_of(model: LoadedModel, item_id: str) -> int:
    """The item's index in ``model``; ``NotFound`` (404) for an item its catalogue lacks."""
    index = model.item_index.get(item_id)
    if index is None:
        raise NotFound(f"item {item_id!r} is not in the catalogue of model {model.version}",
                       details={"item_id": item_id})
    return index


def _you_ordered(_index: int) -> str:
    return "you ordered"


def _you_viewed(_index: int) -> str:
    return "you viewed"


def _in_your_basket(_index: int) -> str:
    return "in your basket"
