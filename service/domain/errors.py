"""Errors the service layer raises, each carrying the HTTP status and the stable ``code`` clients see.

Every error leaves the API as ``{"error": {"code", "message", "details"}}`` (see ``service.api.framework``);
the codes below are part of the contract, the messages are for humans.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An expected failure with a known status; ``details`` is JSON-ready or None."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_input"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class NotAcceptable(ServiceError):
    """The request's ``Accept`` header takes none of the media types the endpoint answers with."""

    status = 406
    code = "not_acceptable"


class Unavailable(ServiceError):
    """Redis is down or slow and the endpoint has no meaningful fallback answer."""

    status = 503
    code = "redis_unavailable"


class NoActiveModel(ServiceError):
    """No model version has been published and activated (or none could be loaded yet)."""

    status = 503
    code = "no_active_model"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


#: Stable error codes of the HTTP statuses the service answers with (417 and 501 only come from gunicorn,
#: for requests it cannot parse: ``service.app.server_errors``).
STATUS_CODES = {
    400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    414: "uri_too_long", 415: "unsupported_media_type", 417: "expectation_failed", 422: "invalid_input",
    429: "too_many_requests", 431: "headers_too_large", 500: "internal_error", 501: "not_implemented",
    503: "unavailable",
}


def error_document(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error envelope every client parses (the API's handlers and the WSGI limits, outside Flask)."""
    return {"error": {"code": code, "message": message, "details": details}}
