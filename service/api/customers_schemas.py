"""Schemas of the customer profile."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from service.domain.profile import STAGES


class TopItemSchema(ma.Schema):
    """An item the customer buys most (by orders, then units)."""

    item_id = fields.String(required=True)
    title = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    orders = fields.Integer(required=True)
    quantity = fields.Float(required=True)


class TopCategorySchema(ma.Schema):
    """A category the customer buys most (by orders)."""

    category = fields.String(required=True)
    orders = fields.Integer(required=True)


class ProfileSchema(ma.Schema):
    """What the shop knows about a customer; journey stage thresholds are configurable."""

    customer_id = fields.String(required=True)
    model_version = fields.String(required=True)
    known = fields.Boolean(required=True, metadata={"description": "published with the served model version"})
    orders = fields.Integer(required=True)
    spend = fields.Float(required=True)
    first_purchase = fields.String(allow_none=True, metadata={"format": "date-time"})
    last_purchase = fields.String(allow_none=True, metadata={"format": "date-time"})
    days_since_last_purchase = fields.Float(allow_none=True)
    journey_stage = fields.String(required=True, metadata={"enum": list(STAGES)})
    country = fields.String(allow_none=True)
    segments = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True, metadata={
        "description": "segment column (`tailor train --segment-col`) -> the customer's value (the one most of "
                       "their purchase lines name), null when unknown; empty for models trained without"})
    top_items = fields.List(fields.Nested(TopItemSchema), required=True)
    top_categories = fields.List(fields.Nested(TopCategorySchema), required=True)
    live_purchases = fields.Integer(required=True, metadata={
        "description": "purchases received as events since the model's data ended"})
    session_items = fields.Integer(required=True)
