"""Schemas of ``POST /v1/audiences``: the targeting a marketing tool sends and the ranked customers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from scoring.audience import MAX_SIZE
from service.api.common_schemas import MAX_ID_LENGTH, IdField
from service.api.promotions_schemas import EligibilitySchema
from service.domain import promotions

MAX_SEEDS = 10_000


#: The targeting rule, stated once for the schema's description (OpenAPI) and its docstring.
TARGETING_RULE = (
    "Targeting: exactly one of `items`, `categories`, `promotion_id`, `lookalike`; or `due_for_reorder: true` "
    "alone (re-orders of any item); or `due_for_reorder: true` with exactly one of `items`, `categories`, "
    "`promotion_id` (re-orders of those items only; a promotion's eligibility applies too). `due_for_reorder` "
    "never combines with `lookalike`, and `false` is the same as leaving it out. Any other combination is a "
    "400 naming the conflicting fields. Plus `size` and/or `min_score`; `eligibility` combines with all.")


class AudienceBody(ma.Schema):
    """The targeting of an audience (``TARGETING_RULE``: one kind of target, which `due_for_reorder` may
    restrict to re-orders), plus `size` and/or `min_score`."""

    class Meta:
        description = TARGETING_RULE

    items = fields.List(IdField(), load_default=None, allow_none=True,
                        validate=validate.Length(1, promotions.MAX_ITEMS),
                        metadata={"description": "target items: the model's affinity of each customer for them"})
    categories = fields.List(fields.String(validate=validate.Length(1, MAX_ID_LENGTH)), load_default=None,
                             allow_none=True, validate=validate.Length(1, promotions.MAX_CATEGORIES),
                             metadata={"description": "target categories: affinity summed over their items"})
    promotion_id = IdField(load_default=None, allow_none=True, metadata={
        "description": "a promotion: its target items (every item when site-wide) and its eligibility"})
    lookalike = fields.List(IdField(), load_default=None, allow_none=True, validate=validate.Length(1, MAX_SEEDS),
                            metadata={"description": "seed customers: the customers who buy most like them "
                                                     "(cosine of item-embedding profiles), seeds excluded"})
    due_for_reorder = fields.Boolean(load_default=False, metadata={
        "description": "customers whose typical re-order interval of an item has passed: of any item alone, of "
                       "the targeted items with `items`, `categories` or `promotion_id` (never with "
                       "`lookalike`); the reason names the item and the days overdue. The interval is (latest "
                       "purchase of the item - first purchase of the item) / (orders of it - 1), for items "
                       "bought in at least two orders; for a model published before the first purchase day "
                       "of each item was kept, the customer's first purchase of anything stands in for it"})
    eligibility = fields.Nested(EligibilitySchema, load_default=None, allow_none=True, metadata={
        "description": "the same rules as promotions (journey_stages, countries, min_orders, min_spend, customers)"})
    size = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(1, MAX_SIZE),
                          metadata={"description": f"at most this many customers, 1..{MAX_SIZE}"})
    min_score = fields.Float(load_default=None, allow_none=True, allow_nan=False, metadata={
        "description": "only customers scoring at least this (without size: up to 100,000 of them)"})


class AudienceCustomerSchema(ma.Schema):
    customer_id = fields.String(required=True)
    score = fields.Float(required=True)
    reason = fields.String(required=True)


class AudienceSchema(ma.Schema):
    model_version = fields.String(required=True)
    size = fields.Integer(required=True, metadata={"description": "customers in the answer"})
    customers = fields.List(fields.Nested(AudienceCustomerSchema), required=True, metadata={
        "description": "best first; with `Accept: text/csv` the same rows as CSV (customer_id,score,reason)"})
    population_truncated = fields.Boolean(metadata={
        "description": "present (true) when the version has more customers than one process loads (500,000)"})
