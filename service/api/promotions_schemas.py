"""Schemas of the promotions endpoints: the definition marketing tools send, and the answers.

Shapes, types and ranges are checked here (and documented in the OpenAPI document); rules that need
several fields or the served model (end after start, items the model knows, one kind of discount) are
checked by ``service.domain.promotions.validate`` and reported in the same error format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import MAX_ID_LENGTH, Float, IdField
from service.domain import promotions
from service.domain.profile import STAGES

#: Promotion times outside these years are certainly typos (and far-off years overflow date arithmetic).
EARLIEST_YEAR, LATEST_YEAR = 2000, 2200


def _number(**kwargs: Any) -> fields.Float:
    return Float(strict=True, allow_nan=False, **kwargs)


def _sane_time(value: datetime) -> None:
    """The year as written (what the OpenAPI pattern states)."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ma.ValidationError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")


#: The year range as a pattern of the times (OpenAPI), 2000-2200.
TIME_PATTERN = r"^(2[01][0-9][0-9]|2200)-"


class DefinitionBody(ma.Schema):
    """A definition's body (promotion, message slot): ``READ_ONLY`` fields that a client sends back
    unchanged from a ``GET`` are dropped before loading."""

    READ_ONLY: tuple[str, ...] = ()

    @ma.pre_load
    def _drop_read_only(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in self.READ_ONLY}
        return data


class OfferSchema(ma.Schema):
    text = fields.String(required=True, validate=validate.Length(1, 500))
    percent_off = _number(load_default=None, allow_none=True,
                          validate=validate.Range(0, 100, min_inclusive=False))
    amount_off = _number(load_default=None, allow_none=True, validate=validate.Range(min=0, min_inclusive=False))


class EligibilitySchema(ma.Schema):
    journey_stages = fields.List(fields.String(validate=validate.OneOf(STAGES)), load_default=None,
                                 allow_none=True, validate=validate.Length(1, len(STAGES)))
    countries = fields.List(fields.String(validate=validate.Length(1, 100)), load_default=None, allow_none=True,
                            validate=validate.Length(1, 300))
    min_orders = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0))
    min_spend = _number(load_default=None, allow_none=True, validate=validate.Range(min=0))
    customers = fields.List(IdField(), load_default=None, allow_none=True,
                            validate=validate.Length(1, promotions.MAX_CUSTOMERS),
                            metadata={"description": "allow-list: only these customers"})


class CapSchema(ma.Schema):
    impressions = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    days = _number(required=True, validate=validate.Range(0, promotions.MAX_CAP_DAYS, min_inclusive=False))


class BudgetSchema(ma.Schema):
    impressions = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0))
    redemptions = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0))


class PromotionBody(DefinitionBody):
    READ_ONLY = ("promotion_id", "created_at", "updated_at")

    name = fields.String(required=True, validate=validate.Length(1, 200))
    items = fields.List(IdField(), load_default=list, validate=validate.Length(max=promotions.MAX_ITEMS),
                        metadata={"description": "target item ids (checked against the active model); with "
                                               "no `items` and no `categories` the promotion is site-wide"})
    categories = fields.List(fields.String(validate=validate.Length(1, MAX_ID_LENGTH)), load_default=list,
                             validate=validate.Length(max=promotions.MAX_CATEGORIES))
    offer = fields.Nested(OfferSchema, required=True)
    starts_at = fields.AwareDateTime(required=True, default_timezone=UTC, validate=_sane_time,
                                     metadata={"pattern": TIME_PATTERN,
                                               "description": "ISO 8601; without an offset it is UTC"})
    ends_at = fields.AwareDateTime(required=True, default_timezone=UTC, validate=_sane_time,
                                   metadata={"pattern": TIME_PATTERN, "description": "must be after starts_at"})
    eligibility = fields.Nested(EligibilitySchema, load_default=dict)
    cap = fields.Nested(CapSchema, load_default=None, allow_none=True, metadata={
        "description": "at most `impressions` per customer in any window of `days` days"})
    budget = fields.Nested(BudgetSchema, load_default=None, allow_none=True, metadata={
        "description": "total impressions and/or redemptions, after which the promotion is not served"})
    weight = _number(load_default=1.0, validate=validate.Range(0, promotions.MAX_WEIGHT, min_inclusive=False))
    status = fields.String(load_default="draft", validate=validate.OneOf(promotions.STATUSES))


class OfferOut(ma.Schema):
    text = fields.String(required=True)
    percent_off = fields.Float()
    amount_off = fields.Float()


class PromotionSchema(PromotionBody):
    promotion_id = fields.String(required=True)
    offer = fields.Nested(OfferOut, required=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class PromotionListSchema(ma.Schema):
    promotions = fields.List(fields.Nested(PromotionSchema), required=True)


class DeleteQuery(ma.Schema):
    purge = fields.Boolean(load_default=False, metadata={
        "description": "also remove the report data (counters, caps, decisions); without it they are kept"})


class PreviewQuery(ma.Schema):
    preview = fields.Boolean(load_default=False, metadata={"description": (
        "true: what the customer would be shown by the same call without it (promotions whose frequency cap "
        "or budget is spent are left out; a message slot's sticky variant is kept), without counting it - no "
        "impression, no frequency-cap or budget use, no decision or sticky record (`decision_id` is null, "
        "but for a sticky message variant); for consoles and QA")})


class CustomerPromotionsQuery(PreviewQuery):
    n = fields.Integer(load_default=3, validate=validate.Range(1, 20), metadata={"description": "1..20"})


class ServedPromotionSchema(ma.Schema):
    promotion_id = fields.String(required=True)
    name = fields.String(required=True)
    offer = fields.Nested(OfferOut, required=True)
    score = fields.Float(required=True, metadata={"description": "affinity (0..1) x weight"})
    reason = fields.String(required=True)
    decision_id = fields.String(required=True, allow_none=True, metadata={
        "description": "send it with the `click` / `conversion` event (`POST /v1/events`); null in a preview"})
    item_id = fields.String(allow_none=True, metadata={"description": "the promoted item behind the score"})


class CustomerPromotionsSchema(ma.Schema):
    customer_id = fields.String(required=True)
    model_version = fields.String(required=True)
    source = fields.String(required=True, metadata={
        "enum": ["personalized", "popular"],
        "description": "personalized: ranked by the customer's affinity; popular: no history, by popularity"})
    journey_stage = fields.String(required=True)
    promotions = fields.List(fields.Nested(ServedPromotionSchema), required=True)


class RateSchema(ma.Schema):
    value = fields.Float(allow_none=True)
    low = fields.Float(required=True, metadata={"description": "95% Wilson interval"})
    high = fields.Float(required=True)


class BudgetUseSchema(ma.Schema):
    impressions = fields.Integer(allow_none=True)
    impressions_left = fields.Integer(allow_none=True)
    redemptions = fields.Integer(allow_none=True)
    redemptions_left = fields.Integer(allow_none=True)


class PositionSchema(ma.Schema):
    position = fields.Integer(required=True)
    impressions = fields.Integer(required=True)


class PromotionReportSchema(ma.Schema):
    promotion_id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": [*promotions.STATUSES, "deleted"]})
    live = fields.Boolean(required=True)
    impressions = fields.Integer(required=True)
    clicks = fields.Integer(required=True)
    conversions = fields.Integer(required=True, metadata={"description": "redemptions"})
    click_rate = fields.Nested(RateSchema, required=True)
    conversion_rate = fields.Nested(RateSchema, required=True)
    budget = fields.Nested(BudgetUseSchema, required=True)
    by_position = fields.List(fields.Nested(PositionSchema), required=True)
