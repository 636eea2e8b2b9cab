"""Liveness and readiness probes."""

from __future__ import annotations

import flask
import marshmallow as ma
from marshmallow import fields

from service.api.framework import Blueprint, error_response, json_response

blp = Blueprint("health", __name__, description="Probes for load balancers and orchestrators")


class HealthSchema(ma.Schema):
    """Liveness answer."""

    status = fields.String(required=True)


class ReadySchema(ma.Schema):
    """Readiness answer."""

    status = fields.String(required=True)
    model_version = fields.String(required=True)
    redis = fields.Boolean(required=True)


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz() -> flask.Response:
    """The process is alive (touches neither Redis nor the model)."""
    return json_response({"status": "ok"})


@blp.route("/readyz", methods=["GET"])
@blp.response(200, ReadySchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def readyz() -> flask.Response:
    """Ready to serve: Redis answers and a model version is loaded; 503 otherwise."""
    tailor = flask.current_app.extensions["tailor"]
    state = tailor.store.current()
    redis_ok = tailor.gateway.ping()
    version = state.model.version if state is not None else None
    if redis_ok and version:
        return json_response({"status": "ready", "model_version": version, "redis": True})
    problems = ([] if redis_ok else ["Redis is unreachable"]) + ([] if version else ["no model version is loaded"])
    return error_response(503, "not_ready", "; ".join(problems), {"redis": redis_ok, "model_version": version})
