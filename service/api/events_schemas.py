"""Schemas of ``POST /v1/events``: a batch of behaviour events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import Float, IdField, has_bad_id_chars, is_plain_id
from service.domain.events import EVENT_TYPES, ITEM_TYPES, Event

#: Timestamps outside this range are certainly wrong (and far-off years overflow date arithmetic).
EARLIEST_YEAR, LATEST_YEAR = 1990, 2200


def _sane_time(value: datetime) -> None:
    """The year *as written* (what the OpenAPI pattern states) is checked: far-off years overflow date
    arithmetic, and years outside this range are certainly wrong."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ma.ValidationError(f"must be between {EARLIEST_YEAR} and {LATEST_YEAR}")


#: The year range as a pattern of the timestamp (OpenAPI), 1990-2200.
TIMESTAMP_PATTERN = r"^(199[0-9]|2[01][0-9][0-9]|2200)-"


class EventSchema(ma.Schema):
    """One behaviour event; unknown fields are rejected so typos surface."""

    event_id = IdField(required=True, metadata={"description": "unique id; a repeated id is ignored"})
    customer_id = IdField(required=True)
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.DateTime(required=True, validate=_sane_time, metadata={
        "pattern": TIMESTAMP_PATTERN, "description": "ISO 8601; without a zone it is taken as UTC; year 1990-2200"})
    item_id = IdField(load_default=None, allow_none=True, metadata={
        "description": f"required for {', '.join(sorted(ITEM_TYPES))}"})
    quantity = Float(strict=True, load_default=None, allow_none=True, allow_nan=False,
                            validate=validate.Range(min=0, min_inclusive=False, max=1_000_000))
    price = Float(strict=True, load_default=None, allow_none=True, allow_nan=False,
                         validate=validate.Range(min=0, max=1_000_000_000))
    decision_id = IdField(load_default=None, allow_none=True, metadata={
        "description": "the decision a click or conversion answers (promotions, message variants)"})

    @ma.validates_schema
    def _item_required(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") in ITEM_TYPES and not data.get("item_id"):
            raise ma.ValidationError(f"required for events of type {data['type']}", "item_id")

    @ma.post_load
    def _event(self, data: dict[str, Any], **_: Any) -> Event:
        return Event(**data)


class EventBatch(ma.Schema):
    """Up to `TAILOR_EVENTS_MAX_BATCH` (1,000) events."""

    events = fields.List(fields.Nested(EventSchema), required=True, validate=validate.Length(min=1))

    @ma.pre_load
    def _bare_list(self, data: Any, **_: Any) -> Any:
        """A bare JSON array of events is accepted too."""
        return {"events": data} if isinstance(data, list) else data

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None) -> Any:
        """Valid batches skip marshmallow's per-field machinery (about 70 us per event); anything the fast
        check does not accept is loaded by the schema itself, which produces the precise error messages."""
        if not many and not partial:
            body = fast_batch(data)
            if body is not None:
                return body
        return super().load(data, many=many, partial=partial, unknown=unknown)


def fast_batch(data: Any) -> dict[str, list[Event]] | None:
    """What ``EventBatch`` loads from a batch that ``fast_events`` accepts; None for anything else."""
    events = fast_events(data)
    return None if events is None else {"events": events}


_EVENT_FIELDS = frozenset(EventSchema().fields)


def _number(value: Any, low: float, high: float, low_inclusive: bool) -> float | None:
    """A JSON number within the range as a float, or None (not a plain finite number, or out of range)."""
    if type(value) is not int and type(value) is not float:  # bool is not a number here, as in marshmallow
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not (low <= number if low_inclusive else low < number) or not number <= high:
        return None
    return number


def fast_events(data: Any) -> list[Event] | None:
    """The events of a batch that ``EventBatch`` would accept, checked with the same rules as
    ``EventSchema``; None as soon as anything is unusual (the schema then decides and explains)."""
    if isinstance(data, dict):
        if len(data) != 1 or "events" not in data:
            return None
        data = data["events"]
    if not isinstance(data, list) or not data:
        return None
    out: list[Event] = []
    ids: list[str] = []
    for raw in data:
        if type(raw) is not dict or not raw.keys() <= _EVENT_FIELDS:
            return None
        try:
            event_id, customer_id, kind, stamp = raw["event_id"], raw["customer_id"], raw["type"], raw["timestamp"]
        except KeyError:
            return None
        if not (is_plain_id(event_id) and is_plain_id(customer_id) and type(kind) is str and kind in EVENT_TYPES
                and type(stamp) is str):
            return None
        item_id, decision_id = raw.get("item_id"), raw.get("decision_id")
        if (item_id is not None and not is_plain_id(item_id)) or (decision_id is not None
                                                                  and not is_plain_id(decision_id)):
            return None
        if kind in ITEM_TYPES and not item_id:
            return None
        try:
            timestamp = datetime.fromisoformat(stamp)
            _sane_time(timestamp)
        except (ValueError, ma.ValidationError):
            return None
        quantity = raw.get("quantity")
        if quantity is not None and (quantity := _number(quantity, 0, 1_000_000, False)) is None:
            return None
        price = raw.get("price")
        if price is not None and (price := _number(price, 0, 1_000_000_000, True)) is None:
            return None
        out.append(Event.checked(event_id, customer_id, kind, timestamp, item_id, quantity, price, decision_id))
        ids += (event_id, customer_id, item_id or "", decision_id or "")
    # One search over all ids at once: the pattern matches single characters, so it finds one in the
    # concatenation exactly when some id has one.
    return None if has_bad_id_chars("".join(ids)) else out


class IngestResultSchema(ma.Schema):
    """How many events of the batch were stored and how many were repeats."""

    received = fields.Integer(required=True)
    accepted = fields.Integer(required=True, metadata={"description": "new events stored"})
    duplicates = fields.Integer(required=True, metadata={
        "description": "events whose event_id was seen before (in this batch or earlier): ignored"})
    unattributed = fields.Integer(required=True, metadata={
        "description": "new clicks and conversions whose decision_id no promotion or message decision takes "
                       "(never made here, past the 7-day attribution window, or made for another customer): "
                       "stored, but counted nowhere (see tailor_unattributed_feedback_total)"})
