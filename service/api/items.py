"""Items: similar items, item metadata, and the admin switch that deactivates an item everywhere."""

from __future__ import annotations

from typing import Any

import flask

from service.api.common_schemas import RecommendationsSchema, path_id
from service.api.framework import Blueprint, json_response
from service.api.items_schemas import ItemPatch, ItemSchema, SimilarQuery
from service.usecases.engine import Engine

blp = Blueprint("items", __name__, url_prefix="/v1/items", description="Catalogue items")


def engine() -> Engine:
    return flask.current_app.extensions["tailor"].engine


@blp.route("/<item_id>/similar", methods=["GET"])
@blp.requires("read")
@blp.arguments(SimilarQuery(), location="query", as_kwargs=True)
@blp.response(200, RecommendationsSchema)
@blp.alt_response(404, response="NOT_FOUND")
def similar(item_id: str, n: int) -> flask.Response:
    """Items bought by the same customers (404 for an item the active model does not know)."""
    path_id(item_id, "item_id")
    return json_response(engine().similar(item_id, n=n))


@blp.route("/<item_id>", methods=["GET"])
@blp.requires("read")
@blp.response(200, ItemSchema)
@blp.alt_response(404, response="NOT_FOUND")
def get_item(item_id: str) -> flask.Response:
    """An item's metadata and whether it is active."""
    path_id(item_id, "item_id")
    return json_response(engine().item(item_id))


@blp.route("/<item_id>", methods=["PATCH"])
@blp.requires("admin")
@blp.arguments(ItemPatch())
@blp.response(200, ItemSchema)
@blp.alt_response(404, response="NOT_FOUND")
def patch_item(body: dict[str, Any], item_id: str) -> flask.Response:
    """Activate or deactivate an item; an inactive item never appears in any answer."""
    path_id(item_id, "item_id")
    return json_response(engine().set_item_active(item_id, body["active"]))
