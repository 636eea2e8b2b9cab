"""Request schemas of the recommendation endpoints (the answer is ``RecommendationsSchema``)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import (
    MAX_EXCLUDE,
    MAX_ID_LENGTH,
    MAX_N,
    IdField,
    QueryFiltersSchema,
    RecommendedItemSchema,
    are_plain_ids,
    category_field,
    has_bad_id_chars,
    n_field,
)

MAX_BASKET = 200


class CustomerRecommendationsQuery(QueryFiltersSchema):
    """Query of `GET /v1/customers/{id}/recommendations`."""

    n = n_field()
    exclude_purchased = fields.Boolean(load_default=False, metadata={
        "description": "true: discovery only (nothing the customer bought); false: the blended buy-again + "
                       "discovery ranking"})


class BasketRequest(ma.Schema):
    """Body of `POST /v1/recommendations`."""

    items = fields.List(IdField(), required=True, validate=validate.Length(max=MAX_BASKET), metadata={
        "description": f"item ids of the basket or the visitor's session (at most {MAX_BASKET}); "
                       "unknown ids are ignored"})
    n = n_field(strict=True)
    exclude = fields.List(IdField(), load_default=list, validate=validate.Length(max=MAX_EXCLUDE))
    category = category_field("only items of this category")
    exclude_category = category_field("no items of this category")

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None) -> Any:
        """Plain valid bodies skip marshmallow's per-field machinery (most of a basket answer's parsing cost);
        anything the fast check does not accept is loaded by the schema, which words the errors."""
        if not many and not partial:
            body = fast_basket(data)
            if body is not None:
                return body
        return super().load(data, many=many, partial=partial, unknown=unknown)


_BASKET_FIELDS = frozenset(("items", "n", "exclude", "category", "exclude_category"))


def _ids(value: Any, limit: int) -> list[str] | None:
    """``value`` as a list of valid ids, or None; the control-character test runs once over all of them."""
    if type(value) is not list or len(value) > limit:
        return None
    if not are_plain_ids(value) or has_bad_id_chars("".join(value)):
        return None
    return list(value)


def fast_basket(data: Any) -> dict[str, Any] | None:
    """What ``BasketRequest`` would load from ``data``, checked with its rules; None when anything is unusual."""
    if type(data) is not dict or not data.keys() <= _BASKET_FIELDS or "items" not in data:
        return None
    items = _ids(data["items"], MAX_BASKET)
    exclude = _ids(data.get("exclude", []), MAX_EXCLUDE)
    n = data.get("n", 10)
    if items is None or exclude is None or type(n) is not int or not 1 <= n <= MAX_N:
        return None
    body: dict[str, Any] = {"items": items, "n": n, "exclude": exclude}
    for name in ("category", "exclude_category"):
        value = data.get(name, "")
        if value == "" and name not in data:
            body[name] = None
        elif type(value) is str and 1 <= len(value) <= MAX_ID_LENGTH:
            body[name] = value
        else:
            return None
    return body


class PopularQuery(ma.Schema):
    """Query of `GET /v1/popular`."""

    n = n_field()
    country = fields.String(load_default=None, validate=validate.Length(1, MAX_ID_LENGTH), metadata={
        "description": "the country's own list where the data has enough customers there, else the global one; "
                       "matched case-insensitively (`united kingdom`); the answer's `segment` says which list "
                       "answered (`country:United Kingdom` or `global`)"})
    segment = fields.String(load_default=None, validate=validate.Length(3, 2 * MAX_ID_LENGTH), metadata={
        "description": "NAME:VALUE of a segment column the model was trained with (`tailor train --segment-col "
                       "NAME`), e.g. AGE_GROUP:25-29: that value's own list where the data has enough customers "
                       "with it; it wins over `country`; else the country's or the global list. Matched "
                       "case-insensitively; `segment` in the answer names the list that answered"})
    category = category_field("only items of this category")


class TrendingQuery(ma.Schema):
    """Query of `GET /v1/trending`."""

    n = n_field()
    window_hours = fields.Float(load_default=24.0, allow_nan=False, validate=validate.Range(1, 168), metadata={
        "description": "the window of live events compared with the usual rate, 1..168 hours (default 24); "
                       "events are time-decayed with a half-life of a third of the window"})
    segment = fields.String(load_default=None, validate=validate.Length(3, 2 * MAX_ID_LENGTH), metadata={
        "description": "NAME:VALUE (`country:United Kingdom`, `AGE_GROUP:25-29`): only events of customers in "
                       "it, compared with its own usual rate; matched case-insensitively"})


class TrendingSchema(ma.Schema):
    model_version = fields.String(required=True)
    source = fields.String(required=True, metadata={"enum": ["trending", "popular"], "description": (
        "trending: items rising in the live events; popular: too few events in the window, the recent "
        "popularity list of the model (of the segment)")})
    segment = fields.String(required=True, metadata={"description": "'global' or the NAME:VALUE that answered"})
    window_hours = fields.Float(required=True)
    events = fields.Integer(required=True, metadata={"description": "views, carts and purchases counted"})
    lag_s = fields.Float(required=True, metadata={
        "description": "the answer lags the events stream by at most this many seconds"})
    as_of = fields.String(allow_none=True, metadata={"format": "date-time",
                                                     "description": "when this process last read the events"})
    items = fields.List(fields.Nested(RecommendedItemSchema), required=True)


MAX_RANK_ITEMS = 500


class RankRequest(ma.Schema):
    items = fields.List(IdField(), required=True, validate=validate.Length(1, MAX_RANK_ITEMS), metadata={
        "description": f"the item ids to reorder, 1..{MAX_RANK_ITEMS}"})

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None) -> Any:
        """As ``BasketRequest.load``: plain valid bodies skip marshmallow's per-item field machinery (20 ids
        cost it ~10% of a rank answer); anything else is loaded by the schema, which words the errors."""
        if not many and not partial:
            body = fast_rank(data)
            if body is not None:
                return body
        return super().load(data, many=many, partial=partial, unknown=unknown)


def fast_rank(data: Any) -> dict[str, Any] | None:
    """What ``RankRequest`` would load from ``data``, checked with its rules; None when anything is unusual."""
    if type(data) is not dict or data.keys() != {"items"}:
        return None
    items = _ids(data["items"], MAX_RANK_ITEMS)
    return {"items": items} if items else None


class RankedItemSchema(ma.Schema):
    item_id = fields.String(required=True)
    title = fields.String(allow_none=True)
    price = fields.Float(allow_none=True)
    category = fields.String(allow_none=True)
    score = fields.Float(allow_none=True, metadata={"description": "null for items the model does not know"})
    reason = fields.String(allow_none=True)


class RankedItemsSchema(ma.Schema):
    customer_id = fields.String(required=True)
    model_version = fields.String(required=True)
    source = fields.String(required=True, metadata={"enum": ["personalized", "session", "popular",
                                                             "popular-fallback"]})
    items = fields.List(fields.Nested(RankedItemSchema), required=True)
