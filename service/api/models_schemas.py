"""Schemas of the model version endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate


class ModelSummarySchema(ma.Schema):
    """The version this process serves."""

    version = fields.String(required=True)
    algorithm = fields.String(allow_none=True)
    params = fields.Dict(allow_none=True)
    created_at = fields.String(allow_none=True)
    published_at = fields.String(allow_none=True, metadata={"format": "date-time", "description": "ISO 8601, UTC"})
    counts = fields.Dict(allow_none=True)
    evaluation = fields.Dict(allow_none=True, metadata={"description": "holdout metrics of the training run"})
    data_until = fields.String(allow_none=True, metadata={"description": "last timestamp of the training data"})
    loaded_at = fields.String(allow_none=True, metadata={"format": "date-time",
                                                         "description": "when this process loaded it (ISO 8601, UTC)"})


class VersionSchema(ma.Schema):
    """A published version with its headline metrics."""

    version = fields.String(required=True)
    active = fields.Boolean(required=True)
    published_at = fields.String(allow_none=True, metadata={"format": "date-time", "description": "ISO 8601, UTC"})
    created_at = fields.String(allow_none=True)
    algorithm = fields.String(allow_none=True)
    params = fields.Dict(allow_none=True)
    counts = fields.Dict(allow_none=True)
    evaluation = fields.Dict(allow_none=True)
    data = fields.Dict(allow_none=True)


class ModelListSchema(ma.Schema):
    """Published versions, newest first, and the version history."""

    active = fields.String(allow_none=True, metadata={"description": "the active version according to Redis"})
    serving = fields.String(allow_none=True, metadata={"description": "the version this process serves"})
    versions = fields.List(fields.Nested(VersionSchema), required=True)
    history = fields.List(fields.Dict(), required=True, metadata={
        "description": "publish / activate / rollback / delete / retrain log, newest first; `at` is ISO 8601 (UTC)"})


class ActivateRequest(ma.Schema):
    """Body of `PUT /v1/models/active`."""

    version = fields.String(required=True, validate=validate.Length(1, 200))


class ActivationSchema(ma.Schema):
    """The version now active, and the one this process serves after reloading."""

    version = fields.String(required=True)
    serving = fields.String(allow_none=True)
