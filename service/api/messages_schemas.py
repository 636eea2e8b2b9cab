"""Schemas of the message-slot endpoints: the slot definition, the customer's variant and the report."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import Float
from service.api.promotions_schemas import DefinitionBody, RateSchema
from service.domain import messages


class VariantBody(ma.Schema):
    id = fields.String(required=True, validate=validate.Length(1, 64), metadata={"pattern": r"^[A-Za-z0-9._-]{1,64}$"})
    content = fields.String(required=True, validate=validate.Length(1, messages.MAX_CONTENT), metadata={
        "description": "text with placeholders: " + ", ".join(f"{{{k}}}" for k in sorted(messages.PLACEHOLDERS))
                       + "; `{name|fallback}` when the value is missing; `{{` / `}}` for literal braces"})
    tone = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 32), metadata={
        "description": "tag such as value, quality, emotional, urgency, support"})


class SlotBody(DefinitionBody):
    READ_ONLY = ("slot", "created_at", "updated_at")

    variants = fields.List(fields.Nested(VariantBody), required=True,
                           validate=validate.Length(messages.MIN_VARIANTS, messages.MAX_VARIANTS), metadata={
                               "uniqueItems": True,
                               "description": "each variant's `id` must be unique within the slot (400 otherwise)"})
    exploration = Float(strict=True, load_default=0.1, allow_nan=False, validate=validate.Range(0, 1), metadata={
        "description": "share of decisions drawn uniformly at random (for measurement)"})
    sticky_days = Float(strict=True, load_default=7.0, allow_nan=False,
                               validate=validate.Range(0, messages.MAX_STICKY_DAYS), metadata={
        "description": "how long a customer keeps the same variant; 0 = decide afresh every time"})


class SlotSchema(SlotBody):
    slot = fields.String(required=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class SlotListSchema(ma.Schema):
    slots = fields.List(fields.Nested(SlotSchema), required=True)


class ChosenVariantSchema(ma.Schema):
    id = fields.String(required=True)
    content = fields.String(required=True, metadata={"description": "rendered for this customer"})
    tone = fields.String(allow_none=True)


class CustomerMessageSchema(ma.Schema):
    customer_id = fields.String(required=True)
    model_version = fields.String(required=True)
    slot = fields.String(required=True)
    variant = fields.Nested(ChosenVariantSchema, required=True)
    decision_id = fields.String(required=True, allow_none=True, metadata={
        "description": "send it with the `click` / `conversion` event (`POST /v1/events`); null in a preview "
                       "that made no decision"})
    propensity = fields.Float(required=True, metadata={
        "description": "probability with which this variant was chosen (for off-policy evaluation)"})
    policy = fields.String(required=True, metadata={"enum": ["bandit", "explore"], "description": (
        "bandit: Thompson sampling; explore: the uniformly random share")})
    sticky = fields.Boolean(required=True, metadata={
        "description": "true: the customer's earlier decision, kept for sticky_days"})
    contextual = fields.Boolean(metadata={
        "description": "fresh decisions: true when the customer's context (embedding, segment) was used"})


class VariantReportSchema(ma.Schema):
    id = fields.String(required=True)
    tone = fields.String(allow_none=True)
    removed = fields.Boolean(required=True, metadata={"description": "no longer in the slot's definition"})
    decisions = fields.Integer(required=True)
    impressions = fields.Integer(required=True, metadata={"description": "decisions + sticky repeats"})
    clicks = fields.Integer(required=True)
    conversions = fields.Integer(required=True)
    rewards = fields.Integer(required=True, metadata={"description": "decisions with a click or conversion"})
    explore_decisions = fields.Integer(required=True)
    explore_rewards = fields.Integer(required=True)
    click_rate = fields.Nested(RateSchema, required=True, metadata={"description": "per decision"})
    conversion_rate = fields.Nested(RateSchema, required=True)
    reward_rate = fields.Nested(RateSchema, required=True)
    explore_reward_rate = fields.Nested(RateSchema, required=True)


class ShareSchema(ma.Schema):
    decisions = fields.Integer(required=True)
    rewards = fields.Integer(required=True)
    reward_rate = fields.Nested(RateSchema, required=True)


class PolicySharesSchema(ma.Schema):
    bandit_share = fields.Nested(ShareSchema, required=True)
    uniform_share = fields.Nested(ShareSchema, required=True)


class EstimateSchema(ma.Schema):
    value = fields.Float(allow_none=True)
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    std_error = fields.Float(allow_none=True)
    snips = fields.Float(allow_none=True, metadata={"description": "self-normalised estimate"})


class OffPolicySchema(ma.Schema):
    decisions = fields.Integer(required=True)
    learned = fields.Nested(EstimateSchema, required=True, metadata={
        "description": "IPS estimate of the reward rate of the learned policy (without the uniform share)"})
    uniform = fields.Nested(EstimateSchema, required=True, metadata={
        "description": "IPS estimate of the reward rate of uniformly random variants"})
    lift = fields.Float(allow_none=True, metadata={"description": "learned / uniform"})


class SlotReportSchema(ma.Schema):
    slot = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["active", "deleted"]})
    exploration = fields.Float(required=True)
    sticky_days = fields.Float(required=True)
    totals = fields.Dict(required=True)
    variants = fields.List(fields.Nested(VariantReportSchema), required=True)
    policy = fields.Nested(PolicySharesSchema, required=True)
    off_policy = fields.Nested(OffPolicySchema, required=True)
