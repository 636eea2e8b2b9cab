"""The human-readable API docs at ``/docs``: Swagger UI served from the package (no CDN at run time)."""

from __future__ import annotations

import flask
from flask_swagger_ui import get_swaggerui_blueprint

DOCS_URL = "/docs"


def docs_blueprint() -> flask.Blueprint:
    """Swagger UI over ``/openapi.json``; the online spec validator badge is off (no internet needed)."""
    return get_swaggerui_blueprint(DOCS_URL, "/openapi.json", config={
        "app_name": "Tailor API", "validatorUrl": None, "persistAuthorization": True,
        "displayRequestDuration": True,
    }, blueprint_name="docs")
