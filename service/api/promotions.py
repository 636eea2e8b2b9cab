"""Targeted promotions: definitions for marketing tools, and the promotions a customer is offered."""

from __future__ import annotations

from typing import Any

import flask

from service.api.common_schemas import path_id
from service.api.framework import Blueprint, json_response
from service.api.promotions_schemas import (
    CustomerPromotionsQuery,
    CustomerPromotionsSchema,
    DeleteQuery,
    PromotionBody,
    PromotionListSchema,
    PromotionReportSchema,
    PromotionSchema,
)
from service.usecases.marketing import Marketing, marketing

blp = Blueprint("promotions", __name__, url_prefix="/v1", description="Targeted promotions")


def board() -> Marketing:
    """The app's promotions and message slots (``service.usecases.marketing``), for this module and ``messages``."""
    app = flask.current_app
    return marketing(app.extensions["tailor"], app.extensions)


@blp.route("/promotions/<promotion_id>", methods=["PUT"])
@blp.requires("marketing")
@blp.arguments(PromotionBody())
@blp.response(200, PromotionSchema)
@blp.alt_response(201, schema=PromotionSchema, description="created")
def put_promotion(body: dict[str, Any], promotion_id: str) -> flask.Response:
    """Create or replace a promotion (201 when created).

    400 names the field at fault: end before start, an item the active model does not know, a negative
    cap, percent and amount off together, ... A change reaches every API process within a second.
    """
    document, created = board().put_promotion(promotion_id, body)
    return json_response(document, 201 if created else 200)


@blp.route("/promotions/<promotion_id>", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, PromotionSchema)
@blp.alt_response(404, response="NOT_FOUND")
def get_promotion(promotion_id: str) -> flask.Response:
    """A promotion's definition."""
    return json_response(board().get_promotion(promotion_id))


@blp.route("/promotions/<promotion_id>", methods=["DELETE"])
@blp.requires("marketing")
@blp.arguments(DeleteQuery(), location="query", as_kwargs=True)
@blp.response(204)
@blp.alt_response(404, response="NOT_FOUND")
def delete_promotion(promotion_id: str, purge: bool) -> flask.Response:
    """Stop and delete a promotion; its report stays readable until `?purge=true` removes everything."""
    board().delete_promotion(promotion_id, purge)
    return flask.current_app.response_class(status=204)


@blp.route("/promotions", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, PromotionListSchema)
def list_promotions() -> flask.Response:
    """Every promotion that is not deleted, by id."""
    return json_response(board().list_promotions())


@blp.route("/promotions/<promotion_id>/report", methods=["GET"])
@blp.requires("marketing")
@blp.response(200, PromotionReportSchema)
@blp.alt_response(404, response="NOT_FOUND")
def promotion_report(promotion_id: str) -> flask.Response:
    """Impressions, clicks and redemptions with rates and 95% Wilson intervals, budget use, by position."""
    return json_response(board().promotion_report(promotion_id))


@blp.route("/customers/<customer_id>/promotions", methods=["GET"])
@blp.requires("read")
@blp.arguments(CustomerPromotionsQuery(), location="query", as_kwargs=True)
@blp.response(200, CustomerPromotionsSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def customer_promotions(customer_id: str, n: int, preview: bool) -> flask.Response:
    """Up to n live promotions the customer is eligible for, within caps and budgets, best first.

    Ranked by the customer's predicted affinity to the promoted items times the promotion's weight
    (customers without a history: popularity of the items). Each answer counts an impression; send a
    `conversion` event with the `decision_id` to count a redemption. `preview=true` answers exactly what
    this call would answer now - a promotion whose frequency cap for the customer or whose budget is spent is
    left out here too - without serving it: no impression, no cap or budget use, no decision (`decision_id`
    null).
    """
    path_id(customer_id, "customer_id")
    return json_response(board().customer_promotions(customer_id, n, preview=preview))
