"""The bare reference apps the API is measured against (issue 15): what Flask + gunicorn + one Redis round trip
cost without Tailor, served with the same gunicorn settings as the API.

    gunicorn -c python:service.gunicorn_conf 'bench.reference_apps:constant'
    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -c python:service.gunicorn_conf 'bench.reference_apps:redis_get'

``constant`` answers a fixed JSON document; ``redis_get`` answers one Redis ``GET`` of a key written at start
(a string of the size of a customer record), the floor of any endpoint that reads a customer.
"""

from __future__ import annotations

import os

import flask
import redis

DOCUMENT = {"items": [{"item_id": f"item-{i}", "score": 1.0 - i / 10} for i in range(10)], "source": "constant"}
KEY = "bench:reference:record"

constant = flask.Flask("constant")
redis_get = flask.Flask("redis_get")
_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=0.05)


@constant.get("/healthz")
@constant.get("/v1/customers/<customer_id>/recommendations")
def constant_view(customer_id: str | None = None) -> flask.Response:
    return flask.jsonify(DOCUMENT)


@redis_get.get("/healthz")
@redis_get.get("/v1/customers/<customer_id>/recommendations")
def redis_get_view(customer_id: str | None = None) -> flask.Response:
    blob = _client.get(KEY)
    return flask.jsonify({**DOCUMENT, "bytes": len(blob or b"")})


def write_record(url: str) -> None:
    """The key ``redis_get`` reads: 400 bytes, about a customer record of ~12 items."""
    redis.Redis.from_url(url).set(KEY, b"x" * 400)
