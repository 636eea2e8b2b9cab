"""Recommendations: for a customer, for a basket or anonymous visitor, and the popular list."""

from __future__ import annotations

from typing import Any

import flask

from service.api.common_schemas import RecommendationsSchema, path_id
from service.api.framework import Blueprint, json_response, plain_body
from service.api.recommendations_schemas import (
    BasketRequest,
    CustomerRecommendationsQuery,
    PopularQuery,
    RankedItemsSchema,
    RankRequest,
    TrendingQuery,
    TrendingSchema,
    fast_basket,
    fast_rank,
)
from service.usecases.engine import Engine

blp = Blueprint("recommendations", __name__, url_prefix="/v1",
                description="Recommendations for customers, baskets and anonymous visitors")


def engine() -> Engine:
    return flask.current_app.extensions["tailor"].engine


@blp.route("/customers/<customer_id>/recommendations", methods=["GET"])
@blp.requires("read")
@blp.arguments(CustomerRecommendationsQuery(), location="query", as_kwargs=True)
@blp.response(200, RecommendationsSchema)
def customer_recommendations(customer_id: str, **args: Any) -> flask.Response:
    """Recommendations for a customer, scored now from their history and live events.

    Unknown customers are not an error: with events they get `session` recommendations, without them the
    `popular` list. When Redis is unavailable the answer is the in-memory popular list (`popular-fallback`).
    """
    path_id(customer_id, "customer_id")
    return json_response(engine().for_customer(customer_id, **args))


@blp.route("/recommendations", methods=["POST"])
@plain_body(fast_basket, as_kwargs=True)
@blp.requires("read")
@blp.arguments(BasketRequest(), as_kwargs=True)
@blp.response(200, RecommendationsSchema)
def basket_recommendations(items: list[str], **args: Any) -> flask.Response:
    """Recommendations from the posted items alone (a basket, or an anonymous visitor's views).

    The posted items themselves are never returned; with no known item the answer is the popular list.
    """
    return json_response(engine().for_basket(items, **args))


@blp.route("/popular", methods=["GET"])
@blp.requires("read")
@blp.arguments(PopularQuery(), location="query", as_kwargs=True)
@blp.response(200, RecommendationsSchema)
def popular(**args: Any) -> flask.Response:
    """The most popular items (distinct recent buyers), per country or segment value where the data allows."""
    return json_response(engine().popular(**args))


@blp.route("/trending", methods=["GET"])
@blp.requires("read")
@blp.arguments(TrendingQuery(), location="query", as_kwargs=True)
@blp.response(200, TrendingSchema)
def trending(**args: Any) -> flask.Response:
    """Items rising now: purchases, carts and views of the last `window_hours` (purchase 3, cart 2, view 1,
    time-decayed) compared with each item's usual rate (the served model's recent popularity).

    Falls back to the recent popularity list (`source` `popular`) when the window holds few events. Each API
    process reads the events stream incrementally at most every 5 seconds: an event shows up in the answer
    within `lag_s` (5 s) of being posted.
    """
    return json_response(flask.current_app.extensions["tailor"].trending.answer(**args))


@blp.route("/customers/<customer_id>/rank", methods=["POST"])
@plain_body(fast_rank, as_kwargs=True)
@blp.requires("read")
@blp.arguments(RankRequest(), as_kwargs=True)
@blp.response(200, RankedItemsSchema)
def rank_items(customer_id: str, items: list[str]) -> flask.Response:
    """The posted items (up to 500: a search result, a category page) reordered for the customer.

    Known items come first, ordered by the customer's scores with reasons; items the model does not know
    keep their given order after them (`score` null). A customer without history (and without events) gets
    popularity order (`source` `popular`); when Redis is unavailable, popularity order too
    (`popular-fallback`). Repeated ids are answered once.
    """
    path_id(customer_id, "customer_id")
    return json_response(engine().rank_items(customer_id, items))
