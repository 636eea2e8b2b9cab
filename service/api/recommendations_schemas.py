"""Request schemas of the recommendation endpoints (the answer is ``RecommendationsSchema``)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from service.api.common_schemas import MAX_EXCLUDE, MAX_ID_LENGTH, IdField, QueryFiltersSchema, category_field, n_field

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


class PopularQuery(ma.Schema):
    """Query of `GET /v1/popular`."""

    n = n_field()
    country = fields.String(load_default=None, validate=validate.Length(1, MAX_ID_LENGTH), metadata={
        "description": "the country's own list where the data has enough customers there, else the global one"})
    category = category_field("only items of this category")
