"""HTTP layer: one flask-smorest blueprint per resource, with its marshmallow schemas next to it."""

from __future__ import annotations

from service.api import audiences, customers, events, health, items, messages, models, promotions, recommendations
from service.api.framework import Blueprint

#: Every resource blueprint, in the order they appear in the OpenAPI document.
BLUEPRINTS: tuple[Blueprint, ...] = (
    recommendations.blp, items.blp, customers.blp, events.blp, models.blp, health.blp, promotions.blp,
    messages.blp, audiences.blp,
)
