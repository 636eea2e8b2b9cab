"""Behaviour events: their types, what each one changes, and their form in the events stream.

* every accepted event is appended to the stream ``keys.EVENTS_STREAM`` (string fields ``event_id,
  customer_id, item_id, type, timestamp`` (ISO 8601, UTC), ``quantity, price, decision_id, received_at``;
  absent optional fields are left out) - ``training/events.py`` reads the purchases back to retrain;
* a ``purchase`` adds one entry to the customer's live overlay (field = event id, so a replay is a no-op);
* ``view`` / ``add_to_cart`` / ``click`` with an item update the customer's session (field = item id);
* a ``click`` or ``conversion`` with a ``decision_id`` rewards the promotion or message variant that made
  that decision (``service.domain.feedback``); impressions are counted when the decision is made.

An event is identified by its customer and ``event_id``: a repeat of the pair is ignored (idempotency).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from scoring.history import SECONDS_PER_DAY

EVENT_TYPES = ("view", "add_to_cart", "purchase", "click", "impression", "conversion")
#: Types that must name an item.
ITEM_TYPES = frozenset({"view", "add_to_cart", "purchase"})
#: Types that shape session recommendations.
SESSION_TYPES = frozenset({"view", "add_to_cart", "click"})


@dataclass(frozen=True)
class Event:
    """A validated event (timestamps are aware or taken as UTC)."""

    event_id: str
    customer_id: str
    type: str
    timestamp: datetime
    item_id: str | None = None
    quantity: float | None = None
    price: float | None = None
    decision_id: str | None = None

    @classmethod
    def checked(cls, event_id: str, customer_id: str, type: str, timestamp: datetime,
                item_id: str | None, quantity: float | None, price: float | None,
                decision_id: str | None) -> Event:
        """The same event as ``Event(...)`` from fields already validated, built without the frozen
        dataclass' per-field ``object.__setattr__`` (~2 us an event, half of checking a batch of 100 events)."""
        event = object.__new__(cls)
        event.__dict__.update(event_id=event_id, customer_id=customer_id, type=type, timestamp=timestamp,
                              item_id=item_id, quantity=quantity, price=price, decision_id=decision_id)
        return event

    @property
    def day(self) -> float:
        """Float days since the epoch, the time unit of every purchase history."""
        return utc(self.timestamp).timestamp() / SECONDS_PER_DAY

    @property
    def is_purchase(self) -> bool:
        return self.type == "purchase" and self.item_id is not None

    @property
    def is_session(self) -> bool:
        return self.type in SESSION_TYPES and self.item_id is not None


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime (naive input is taken to be UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stream_fields(event: Event, received_at: float) -> dict[str, str]:
    """The stream entry of an event (all values strings, optional ones only when present)."""
    flat = stream_entry(event, received_at_text(received_at))
    return dict(zip(flat[::2], flat[1::2], strict=True))


def received_at_text(received_at: float) -> str:
    """How the stream writes the time an event was received (epoch seconds, ms precision)."""
    return f"{received_at:.3f}"


def stream_entry(event: Event, received_at: str) -> list[str]:
    """``stream_fields`` as the flat field/value list ``XADD`` takes (``received_at`` formatted once per
    batch by ``received_at_text``)."""
    entry = ["event_id", event.event_id, "customer_id", event.customer_id, "type", event.type,
             "timestamp", utc(event.timestamp).isoformat(), "received_at", received_at]
    if event.item_id is not None:
        entry += ("item_id", event.item_id)
    if event.quantity is not None:
        entry += ("quantity", repr(float(event.quantity)))
    if event.price is not None:
        entry += ("price", repr(float(event.price)))
    if event.decision_id is not None:
        entry += ("decision_id", event.decision_id)
    return entry


def unique_by_id(events: Iterable[Event]) -> tuple[list[Event], int]:
    """First occurrence of each event (customer and event id) in a batch, and how many repeats were dropped."""
    seen: set[tuple[str, str]] = set()
    unique: list[Event] = []
    total = 0
    for event in events:
        total += 1
        key = (event.customer_id, event.event_id)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique, total - len(unique)
