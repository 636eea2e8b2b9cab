"""Schemas of the item endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from service.api.common_schemas import StrictBoolean, n_field


class SimilarQuery(ma.Schema):
    """Query of `GET /v1/items/{id}/similar`."""

    n = n_field()


class ItemPatch(ma.Schema):
    """Body of `PATCH /v1/items/{id}` (admin)."""

    active = StrictBoolean(required=True, metadata={
        "description": "false: the item never appears in any answer of any API process (within a second)"})


class ItemSchema(ma.Schema):
    """An item of the served model's catalogue."""

    item_id = fields.String(required=True)
    title = fields.String(allow_none=True)
    price = fields.Float(allow_none=True)
    category = fields.String(allow_none=True)
    active = fields.Boolean(required=True)
    model_version = fields.String(required=True)
