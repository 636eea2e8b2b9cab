"""Customer profiles: what the shop knows about a customer, and their journey stage."""

from __future__ import annotations

import flask

from service.api.common_schemas import path_id
from service.api.customers_schemas import ProfileSchema
from service.api.framework import Blueprint, json_response

blp = Blueprint("customers", __name__, url_prefix="/v1/customers", description="Customer profiles")


@blp.route("/<customer_id>/profile", methods=["GET"])
@blp.requires("read")
@blp.response(200, ProfileSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def profile(customer_id: str) -> flask.Response:
    """Orders, spend, first/last purchase, journey stage, top items and categories.

    An unknown customer is `new` (not an error). 503 when Redis is unavailable.
    """
    path_id(customer_id, "customer_id")
    return json_response(flask.current_app.extensions["tailor"].engine.profile(customer_id))
