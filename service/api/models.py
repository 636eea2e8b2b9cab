"""Model versions: the published ones with their metrics, the active one, activation and rollback."""

from __future__ import annotations

from typing import Any

import flask

from service.api.framework import Blueprint, json_response
from service.api.models_schemas import ActivateRequest, ActivationSchema, ModelListSchema, ModelSummarySchema
from service.domain.errors import Conflict, NotFound

blp = Blueprint("models", __name__, url_prefix="/v1/models", description="Model versions")


def _tailor() -> Any:
    return flask.current_app.extensions["tailor"]


def _serving_version() -> str | None:
    state = _tailor().store.current()
    return state.model.version if state is not None else None


@blp.route("", methods=["GET"])
@blp.requires("read")
@blp.response(200, ModelListSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def list_models() -> flask.Response:
    """Published versions (newest first) with their evaluation metrics, and the version history."""
    listing = _tailor().repository.model_versions()
    return json_response({**listing, "serving": _serving_version()})


@blp.route("/active", methods=["GET"])
@blp.requires("read")
@blp.response(200, ModelSummarySchema)
def active_model() -> flask.Response:
    """The version this process serves, with its metrics (answered from memory)."""
    return json_response(_tailor().engine.serving().model.summary())


@blp.route("/active", methods=["PUT"])
@blp.requires("admin")
@blp.arguments(ActivateRequest())
@blp.response(200, ActivationSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def activate(body: dict[str, Any]) -> flask.Response:
    """Activate a published version; every API process switches to it within a second.

    409 when another model change (a publish, activation, rollback or delete) kept the version list locked
    for more than 10 seconds: nothing changed, try again."""
    from redis_state.versions import ModelChangeBusy, PublishError

    tailor = _tailor()
    try:
        tailor.repository.activate(body["version"])
    except ModelChangeBusy as exc:
        raise Conflict(str(exc)) from None
    except PublishError as exc:
        raise NotFound(str(exc), details={"version": body["version"]}) from None
    tailor.store.refresh()
    return json_response({"version": body["version"], "serving": _serving_version()})


@blp.route("/rollback", methods=["POST"])
@blp.requires("admin")
@blp.response(200, ActivationSchema)
@blp.alt_response(409, response="CONFLICT")
def rollback() -> flask.Response:
    """Re-activate the version that was active before the current one."""
    from redis_state.versions import PublishError

    tailor = _tailor()
    try:
        version = tailor.repository.rollback()
    except PublishError as exc:
        raise Conflict(str(exc)) from None
    tailor.store.refresh()
    return json_response({"version": version, "serving": _serving_version()})
