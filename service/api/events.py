"""Behaviour events from shop frontends: views, carts, purchases, clicks, impressions, conversions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import flask

from service.api.events_schemas import EventBatch, IngestResultSchema, fast_batch
from service.api.framework import Blueprint, json_response, plain_body
from service.domain.errors import InvalidInput
from service.infrastructure.metrics import count_events

blp = Blueprint("events", __name__, url_prefix="/v1/events", description="Behaviour events (the feedback loop)")


@blp.route("", methods=["POST"])
@plain_body(fast_batch)
@blp.requires("read")
@blp.arguments(EventBatch())
@blp.response(200, IngestResultSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def post_events(body: dict[str, Any]) -> flask.Response:
    """Store a batch of events, idempotently per `event_id`.

    Accepted events are appended to the capped events stream that retraining reads. A purchase is
    excluded from the customer's discovery recommendations at once; views, carts and clicks shape
    session recommendations for customers the model does not know yet. 503 when Redis is unavailable:
    send the batch again (the events' ids make the retry safe).
    """
    tailor = flask.current_app.extensions["tailor"]
    events = body["events"]
    limit = tailor.settings.events_max_batch
    if len(events) > limit:
        raise InvalidInput(f"at most {limit} events per request",
                           details={"json": {"events": [f"at most {limit} events per request"]}})
    result = tailor.engine.ingest(events)
    count_events((event.type for event in events), result.accepted, result.duplicates)
    return json_response(asdict(result))
