"""Message slots: variants for marketing tools, and the variant a customer sees (a contextual bandit)."""

from __future__ import annotations

from typing import Any

import flask

from service.api.common_schemas import path_id
from service.api.framework import Blueprint, json_response
from service.api.messages_schemas import (
    CustomerMessageSchema,
    SlotBody,
    SlotListSchema,
    SlotReportSchema,
    SlotSchema,
)
from service.api.promotions import board
from service.api.promotions_schemas import DeleteQuery, PreviewQuery

blp = Blueprint("messages", __name__, url_prefix="/v1", description="Personalized message variants")


@blp.route("/messages/<slot>", methods=["PUT"])
@blp.requires("marketing")
@blp.arguments(SlotBody())
@blp.response(200, SlotSchema)
@blp.alt_response(201, schema=SlotSchema, description="created")
def put_slot(body: dict[str, Any], slot: str) -> flask.Response:
    """Create or replace a message slot with 2-20 variants (201 when created).

    Every API process uses the change within a second; the bandit keeps what it learned about variants
    whose id stays the same. 400 names the field at fault, also for rules the schema cannot state:
    duplicate variant ids, unknown placeholders in a variant's content.
    """
    document, created = board().put_slot(slot, body)
    return json_response(document, 201 if created else 200)


@blp.route("/messages/<slot>", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, SlotSchema)
@blp.alt_response(404, response="NOT_FOUND")
def get_slot(slot: str) -> flask.Response:
    """A slot's definition."""
    return json_response(board().get_slot(slot))


@blp.route("/messages/<slot>", methods=["DELETE"])
@blp.requires("marketing")
@blp.arguments(DeleteQuery(), location="query", as_kwargs=True)
@blp.response(204)
@blp.alt_response(404, response="NOT_FOUND")
def delete_slot(slot: str, purge: bool) -> flask.Response:
    """Delete a slot; its report and learned state stay until `?purge=true` removes everything."""
    board().delete_slot(slot, purge)
    return flask.current_app.response_class(status=204)


@blp.route("/messages", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, SlotListSchema)
def list_slots() -> flask.Response:
    """Every slot that is not deleted, by name."""
    return json_response(board().list_slots())


@blp.route("/messages/<slot>/report", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, SlotReportSchema)
@blp.alt_response(404, response="NOT_FOUND")
def slot_report(slot: str) -> flask.Response:
    """Per variant: decisions, impressions, clicks, conversions and rates with 95% Wilson intervals; the
    uniform share's observed rate; IPS estimates of the learned policy against uniform random."""
    return json_response(board().slot_report(slot))


@blp.route("/customers/<customer_id>/messages/<slot>", methods=["GET"])
@blp.requires("read")
@blp.arguments(PreviewQuery(), location="query", as_kwargs=True)
@blp.response(200, CustomerMessageSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def customer_message(customer_id: str, slot: str, preview: bool) -> flask.Response:
    """The slot's variant for this customer, rendered, with its `decision_id` and the probability with
    which it was chosen. Send `click` / `conversion` events with the `decision_id` to reward it.

    `preview=true`: the variant the customer would get, without counting it - no impression, no decision
    recorded, no sticky record (`decision_id` null unless the customer already keeps a sticky variant). A
    customer keeping a sticky variant is previewed exactly the real call's answer; otherwise the preview is
    one draw of the same policy, and the real call draws again (the bandit samples its choice)."""
    path_id(customer_id, "customer_id")
    return json_response(board().customer_message(customer_id, slot, preview=preview))
