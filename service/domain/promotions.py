"""Targeted promotions: definitions, their rules and eligibility, and reports.

A customer's promotions are the live ones (status ``active``, inside their time window) whose eligibility
rules admit the customer; their order is ``service.domain.promotion_ranking``'s, and the exact caps and
budgets of serving are Lua scripts of ``service.infrastructure.promotion_book``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scoring.audience import MAX_ELIGIBLE_CUSTOMERS
from service.domain import reports
from service.domain.targeting import (
    Catalogue,
    CustomerFacts,
    DefinitionError,
    as_time,
    check_identifier,
    is_number,
    isoformat,
)

STATUSES = ("draft", "active", "paused")
MAX_ITEMS = 1_000
MAX_CATEGORIES = 100
MAX_CUSTOMERS = MAX_ELIGIBLE_CUSTOMERS  # eligibility.customers, shared with audiences
MAX_WEIGHT = 1_000.0
MAX_CAP_DAYS = 3_650.0


# -- definitions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    text: str
    percent_off: float | None = None
    amount_off: float | None = None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"text": self.text}
        if self.percent_off is not None:
            doc["percent_off"] = self.percent_off
        if self.amount_off is not None:
            doc["amount_off"] = self.amount_off
        return doc


@dataclass(frozen=True)
class Eligibility:
    """Who may see a promotion; every rule that is set must hold (None = no restriction)."""

    journey_stages: tuple[str, ...] | None = None
    countries: tuple[str, ...] | None = None
    min_orders: int | None = None
    min_spend: float | None = None
    customers: frozenset[str] | None = None

    def admits(self, customer: CustomerFacts) -> bool:
        if self.customers is not None and customer.customer_id not in self.customers:
            return False
        if self.journey_stages is not None and customer.stage not in self.journey_stages:
            return False
        if self.countries is not None and (customer.country or "").casefold() not in {
                c.casefold() for c in self.countries}:
            return False
        if self.min_orders is not None and customer.orders < self.min_orders:
            return False
        return self.min_spend is None or customer.spend >= self.min_spend


@dataclass(frozen=True)
class Cap:
    """At most ``impressions`` impressions per customer in any window of ``days`` days."""

    impressions: int
    days: float


@dataclass(frozen=True)
class Budget:
    """Total impressions and/or redemptions after which the promotion is no longer served."""

    impressions: int | None = None
    redemptions: int | None = None


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    name: str
    offer: Offer
    starts_at: datetime
    ends_at: datetime
    items: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    eligibility: Eligibility = field(default_factory=Eligibility)
    cap: Cap | None = None
    budget: Budget | None = None
    weight: float = 1.0
    status: str = "draft"
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def site_wide(self) -> bool:
        """No target items or categories: the offer applies to the whole catalogue."""
        return not self.items and not self.categories

    def live(self, now: datetime) -> bool:
        """Active and inside its time window."""
        return self.status == "active" and self.starts_at <= now < self.ends_at

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Promotion:
        """From a stored document or a request body already loaded by its schema (times as str or datetime)."""
        offer = doc.get("offer") or {}
        elig = doc.get("eligibility") or {}
        cap = doc.get("cap")
        budget = doc.get("budget")

        def opt_tuple(value: Any) -> tuple[str, ...] | None:
            return None if value is None else tuple(str(v) for v in value)

        return cls(
            promotion_id=str(doc["promotion_id"]),
            name=str(doc.get("name", "")),
            offer=Offer(str(offer.get("text", "")), offer.get("percent_off"), offer.get("amount_off")),
            starts_at=as_time(doc["starts_at"]),  # type: ignore[arg-type]
            ends_at=as_time(doc["ends_at"]),  # type: ignore[arg-type]
            items=tuple(dict.fromkeys(str(i) for i in doc.get("items") or ())),
            categories=tuple(dict.fromkeys(str(c) for c in doc.get("categories") or ())),
            eligibility=Eligibility(
                journey_stages=opt_tuple(elig.get("journey_stages")),
                countries=opt_tuple(elig.get("countries")),
                min_orders=elig.get("min_orders"),
                min_spend=elig.get("min_spend"),
                customers=None if elig.get("customers") is None else frozenset(str(c) for c in elig["customers"]),
            ),
            cap=None if cap is None else Cap(cap.get("impressions"), cap.get("days")),
            budget=None if budget is None else Budget(budget.get("impressions"), budget.get("redemptions")),
            weight=1.0 if doc.get("weight") is None else doc["weight"],
            status=str(doc.get("status") or "draft"),
            created_at=as_time(doc.get("created_at")),
            updated_at=as_time(doc.get("updated_at")),
        )

    def to_document(self) -> dict[str, Any]:
        """JSON-ready, in the contract's field names (also what ``GET`` answers)."""
        e = self.eligibility
        eligibility: dict[str, Any] = {}
        if e.journey_stages is not None:
            eligibility["journey_stages"] = list(e.journey_stages)
        if e.countries is not None:
            eligibility["countries"] = list(e.countries)
        if e.min_orders is not None:
            eligibility["min_orders"] = e.min_orders
        if e.min_spend is not None:
            eligibility["min_spend"] = e.min_spend
        if e.customers is not None:
            eligibility["customers"] = sorted(e.customers)
        doc: dict[str, Any] = {
            "promotion_id": self.promotion_id, "name": self.name, "items": list(self.items),
            "categories": list(self.categories), "offer": self.offer.to_document(),
            "starts_at": isoformat(self.starts_at), "ends_at": isoformat(self.ends_at), "eligibility": eligibility,
            "cap": None if self.cap is None else {"impressions": self.cap.impressions, "days": self.cap.days},
            "budget": None if self.budget is None else {
                k: v for k, v in (("impressions", self.budget.impressions),
                                  ("redemptions", self.budget.redemptions)) if v is not None},
            "weight": self.weight, "status": self.status,
            "created_at": None if self.created_at is None else isoformat(self.created_at),
            "updated_at": None if self.updated_at is None else isoformat(self.updated_at),
        }
        return doc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(promotion: Promotion, catalogue: Catalogue | None, stages: Sequence[str]) -> None:
    """Raise ``DefinitionError`` naming every field at fault.

    Items and categories are checked against ``catalogue`` (the active model version); without an active
    model they cannot be checked and are accepted (unknown ones are then simply never matched).
    """
    p = promotion
    errors: dict[str, str] = {}
    check_identifier(p.promotion_id, "promotion_id")
    if not p.name.strip() or len(p.name) > 200:
        errors["name"] = "required, at most 200 characters"
    if len(p.items) > MAX_ITEMS:
        errors["items"] = f"at most {MAX_ITEMS} items"
    if len(p.categories) > MAX_CATEGORIES:
        errors["categories"] = f"at most {MAX_CATEGORIES} categories"
    if catalogue is not None:
        unknown = [i for i in p.items if i not in catalogue.item_index]
        if unknown and "items" not in errors:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            errors["items"] = f"unknown item(s) in model {catalogue.version}: {shown}"
        missing = [c for c in p.categories if c not in catalogue.category_index]
        if missing and "categories" not in errors:
            if not catalogue.category_index:
                errors["categories"] = f"model {catalogue.version} has no item categories; target items instead"
            else:
                errors["categories"] = f"unknown categor(ies) in model {catalogue.version}: {', '.join(missing[:10])}"
    offer = p.offer
    if not offer.text.strip() or len(offer.text) > 500:
        errors["offer.text"] = "required, at most 500 characters"
    if offer.percent_off is not None and not (is_number(offer.percent_off) and 0 < offer.percent_off <= 100):
        errors["offer.percent_off"] = "a number in (0, 100]"
    if offer.amount_off is not None and not (is_number(offer.amount_off) and offer.amount_off > 0):
        errors["offer.amount_off"] = "a number > 0"
    if offer.percent_off is not None and offer.amount_off is not None:
        errors["offer"] = "give percent_off or amount_off, not both"
    if p.starts_at.tzinfo is None or p.ends_at.tzinfo is None:
        errors["starts_at"] = "times need a UTC offset"
    elif p.ends_at <= p.starts_at:
        errors["ends_at"] = "must be after starts_at"
    e = p.eligibility
    if e.journey_stages is not None:
        bad = [s for s in e.journey_stages if s not in stages]
        if bad:
            errors["eligibility.journey_stages"] = f"unknown stage(s) {', '.join(bad)}; known: {', '.join(stages)}"
    if e.countries is not None and any(not c.strip() for c in e.countries):
        errors["eligibility.countries"] = "country names must not be empty"
    if e.min_orders is not None and not (_is_int(e.min_orders) and e.min_orders >= 0):
        errors["eligibility.min_orders"] = "an integer >= 0"
    if e.min_spend is not None and not (is_number(e.min_spend) and e.min_spend >= 0):
        errors["eligibility.min_spend"] = "a number >= 0"
    if e.customers is not None and (len(e.customers) > MAX_CUSTOMERS or any(not c for c in e.customers)):
        errors["eligibility.customers"] = f"at most {MAX_CUSTOMERS} non-empty customer ids"
    if p.cap is not None:
        if not (_is_int(p.cap.impressions) and p.cap.impressions >= 1):
            errors["cap.impressions"] = "an integer >= 1"
        if not (is_number(p.cap.days) and 0 < p.cap.days <= MAX_CAP_DAYS):
            errors["cap.days"] = f"a number in (0, {MAX_CAP_DAYS:g}]"
    if p.budget is not None:
        for name, value in (("impressions", p.budget.impressions), ("redemptions", p.budget.redemptions)):
            if value is not None and not (_is_int(value) and value >= 0):
                errors[f"budget.{name}"] = "an integer >= 0"
    if not (is_number(p.weight) and 0 < p.weight <= MAX_WEIGHT):
        errors["weight"] = f"a number in (0, {MAX_WEIGHT:g}]"
    if p.status not in STATUSES:
        errors["status"] = f"one of {', '.join(STATUSES)}"
    if errors:
        raise DefinitionError(errors)


def promotion_report(promotion: Promotion, counters: Mapping[str, int], *, deleted: bool = False,
                     now: datetime | None = None) -> dict[str, Any]:
    """Impressions, clicks, redemptions and their rates (95% Wilson intervals), budget use, by position."""
    impressions = counters.get("impressions", 0)
    clicks = counters.get("clicks", 0)
    redemptions = counters.get("redemptions", 0)
    budget = promotion.budget or Budget()
    positions = sorted((int(k.split(":", 1)[1]), v) for k, v in counters.items() if k.startswith("pos:"))
    return {
        "promotion_id": promotion.promotion_id,
        "name": promotion.name,
        "status": "deleted" if deleted else promotion.status,
        "live": (not deleted) and now is not None and promotion.live(now),
        "impressions": impressions,
        "clicks": clicks,
        "conversions": redemptions,
        "click_rate": reports.rate(clicks, impressions),
        "conversion_rate": reports.rate(redemptions, impressions),
        "budget": {
            "impressions": budget.impressions,
            "impressions_left": None if budget.impressions is None else max(budget.impressions - impressions, 0),
            "redemptions": budget.redemptions,
            "redemptions_left": None if budget.redemptions is None else max(budget.redemptions - redemptions, 0),
        },
        "by_position": [{"position": pos, "impressions": count} for pos, count in positions],
    }
