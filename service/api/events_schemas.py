"""Schemas of ``POST /v1/events``: a batch of behaviour events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import IdField
from service.domain.events import EVENT_TYPES, ITEM_TYPES, Event, utc

#: Timestamps outside this range are certainly wrong (and far-off years overflow date arithmetic).
EARLIEST_YEAR, LATEST_YEAR = 1990, 2200


def _sane_time(value: datetime) -> None:
    try:
        year = utc(value).year
    except (OverflowError, ValueError):
        year = 0
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ma.ValidationError(f"must be between {EARLIEST_YEAR} and {LATEST_YEAR}")


class EventSchema(ma.Schema):
    """One behaviour event; unknown fields are rejected so typos surface."""

    event_id = IdField(required=True, metadata={"description": "unique id; a repeated id is ignored"})
    customer_id = IdField(required=True)
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.DateTime(required=True, validate=_sane_time, metadata={
        "description": "ISO 8601; without a zone it is taken as UTC"})
    item_id = IdField(load_default=None, allow_none=True, metadata={
        "description": f"required for {', '.join(sorted(ITEM_TYPES))}"})
    quantity = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                            validate=validate.Range(min=0, min_inclusive=False, max=1_000_000))
    price = fields.Float(load_default=None, allow_none=True, allow_nan=False,
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


class IngestResultSchema(ma.Schema):
    """How many events of the batch were stored and how many were repeats."""

    received = fields.Integer(required=True)
    accepted = fields.Integer(required=True, metadata={"description": "new events stored"})
    duplicates = fields.Integer(required=True, metadata={
        "description": "events whose event_id was seen before (in this batch or earlier): ignored"})
