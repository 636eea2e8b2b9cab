"""flask-smorest adapted to the service's contract: one error envelope, strict JSON bodies, cheap responses.

* ``TailorApi`` renders every error - validation, 404, 405, 413, auth, service errors, and as a last
  resort unexpected exceptions - as ``{"error": {"code", "message", "details"}}`` and documents that
  schema in the OpenAPI document.
* ``TailorParser`` parses JSON bodies with orjson (rejects NaN, depth > 1024, invalid UTF-8), answers 415
  for a body that is not ``application/json`` and 400 (not webargs' 422) for validation errors, so every
  "your input is wrong" answer has the same status.
* Every ``/v1`` route refuses query parameters it does not declare (400 naming them): routes with a query
  schema through the parser (``unknown=RAISE``, a repeated single-valued parameter too), routes without one
  through ``TailorApi.register_blueprint``, which wraps their views to refuse any query string.
* ``Blueprint.requires(scope)`` checks the API key and documents the security requirement.
* ``plain_body(check)`` lets a plain JSON body of a hot endpoint skip webargs' and flask-smorest's wrappers.
* ``json_response`` serialises with orjson; views on the hot path return it directly, which flask-smorest
  passes through untouched while still documenting the response schema.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from copy import deepcopy
from typing import Any, ClassVar

import flask
import marshmallow as ma
import orjson
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.utils import load_info_from_docstring
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from webargs.multidictproxy import MultiDictProxy
from werkzeug.exceptions import HTTPException

from service.api.auth import authorize
from service.domain.errors import STATUS_CODES, ServiceError, error_document

log = logging.getLogger("tailor.api")
#: Paths of the API proper: a query string there must match the route's declared query parameters.
API_PREFIX = "/v1/"
_request = flask.request._get_current_object  # type: ignore[attr-defined]

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


class ErrorBodySchema(ma.Schema):
    """The body of every error."""

    code = ma.fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "human-readable explanation"})
    details = ma.fields.Raw(allow_none=True, metadata={
        "description": "field errors ({location: {field: [messages]}}) or other context; may be null"})


class ErrorSchema(ma.Schema):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    """A JSON response serialised with orjson (several times faster than the stdlib on these payloads);
    ``bytes`` are taken as an already serialised document (the engine's memoised answers)."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return flask.current_app.response_class(body, status=status, headers=headers, mimetype="application/json")


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> flask.Response:
    return json_response(error_document(code, message, details), status, headers)


class TailorParser(FlaskParser):
    """webargs parser: orjson bodies, 415 for non-JSON bodies, 400 for validation errors.

    Parsed query strings are memoised per schema: a query's arguments are a pure function of its raw
    bytes, frontends send the same few shapes (``n=10``) again and again, and a marshmallow load costs
    more than the rest of a cached recommendation. Only valid queries are kept (invalid ones are
    re-validated and rejected each time); the memo is bounded and emptied when full. A single-valued
    parameter given twice is invalid (400 naming it), like an unknown one.
    """

    DEFAULT_VALIDATION_STATUS = 400
    QUERY_MEMO_ENTRIES = 4096
    QUERY_MEMO_MAX_BYTES = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._query_memo: dict[tuple[ma.Schema, bytes, Any], dict[str, Any]] = {}

    def parse(self, argmap: Any, req: flask.Request | None = None, *, location: str | None = None,
              validate: Any = None, **kwargs: Any) -> Any:
        if location != "query":
            return super().parse(argmap, req, location=location, validate=validate, **kwargs)
        if kwargs.get("unknown") in (None, core._UNKNOWN_DEFAULT_PARAM):
            kwargs["unknown"] = ma.RAISE  # a misspelt parameter is a 400 naming it, never silently ignored
        request = req or flask.request
        raw = request.query_string
        if validate is not None or not isinstance(argmap, ma.Schema) or len(raw) > self.QUERY_MEMO_MAX_BYTES:
            self._refuse_repeats(argmap, request)
            return super().parse(argmap, req, location=location, validate=validate, **kwargs)
        key = (argmap, raw, kwargs.get("unknown"))
        parsed = self._query_memo.get(key)
        if parsed is None:  # only valid queries are remembered: the repeat check runs on misses only
            self._refuse_repeats(argmap, request)
            parsed = super().parse(argmap, req, location=location, **kwargs)
            if not isinstance(parsed, dict):
                return parsed
            if len(self._query_memo) >= self.QUERY_MEMO_ENTRIES:
                self._query_memo.clear()
            self._query_memo[key] = parsed
        # Views get their own dict and lists: nothing they do can change the remembered arguments.
        return {name: list(value) if isinstance(value, list) else value for name, value in parsed.items()}

    def _refuse_repeats(self, argmap: Any, req: flask.Request) -> None:
        """400 naming the single-valued parameters given more than once (``?n=1&n=5``): keeping the first
        silently would answer another question than the one asked. List fields (``exclude``) take repeats;
        unknown names are left to ``unknown=RAISE``."""
        repeated = [name for name, values in req.args.lists() if len(values) > 1]
        if not repeated:
            return
        schema = argmap if isinstance(argmap, ma.Schema) else self._get_schema(argmap, req)
        declared = {field.data_key or name for name, field in schema.fields.items()}
        lists = MultiDictProxy(req.args, schema, tuple(self.KNOWN_MULTI_FIELDS)).multiple_keys
        single = [name for name in repeated if name in declared and name not in lists]
        if single:
            abort(400, messages={"query": {name: ["Given more than once; send one value."] for name in single}})

    def _raw_load_json(self, req: flask.Request) -> Any:
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        if not is_json_request(req):
            abort(415, messages={"headers": {"Content-Type": ["send the body as application/json"]}})
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            abort(400, exc=exc, message="the request body is not valid JSON",
                  messages={"json": [f"invalid JSON: {exc}"]})


class Blueprint(SmorestBlueprint):
    """flask-smorest blueprint with the service's parser and an auth decorator."""

    ARGUMENTS_PARSER = TailorParser()

    def requires(self, scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Check the API key for ``scope`` before anything else, and document it (401/403 responses)."""
        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                authorize(scope)
                return view(*args, **kwargs)

            wrapper._tailor_scope = scope  # type: ignore[attr-defined]  # see refuse_query_string
            wrapper._apidoc = deepcopy(getattr(view, "_apidoc", {}))  # type: ignore[attr-defined]
            doc = wrapper._apidoc  # type: ignore[attr-defined]
            responses = doc.setdefault("response", {}).setdefault("responses", {})
            responses.setdefault(401, []).append("UNAUTHORIZED")
            responses.setdefault(403, []).append("FORBIDDEN")
            manual = doc.setdefault("manual_doc", {})
            manual["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
            if scope == "read":
                manual["security"].append({})
            # The manual doc replaces the one flask-smorest reads from the docstring: keep the docstring's text.
            described = manual.get("description") or load_info_from_docstring(
                view.__doc__ or "", delimiter=self.DOCSTRING_INFO_DELIMITER).get("description", "")
            manual["description"] = (described + f"\n\nScope: `{scope}`.").strip()
            return wrapper

        return decorator


def declares_query(view: Callable[..., Any]) -> bool:
    """Whether a view parses query parameters (``@blp.arguments(..., location="query")``)."""
    parameters = getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return any(isinstance(p, dict) and p.get("in") == "query" for p in parameters)


def refuse_query_string(view: Callable[..., Any]) -> Callable[..., Any]:
    """``view`` answering 400 naming the parameters of any query string, as a route with a query schema
    answers for an unknown one (a typo such as ``?nn=5`` must not be silently ignored).

    A request without a query string pays one truthiness test. The API key is checked first (401 / 403 before
    400), as on the routes that parse a query."""
    scope = getattr(view, "_tailor_scope", None)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _request().query_string:
            names = list(flask.request.args)
            if names:
                if scope is not None:
                    authorize(scope)
                abort(400, messages={"query": {name: ["Unknown field."] for name in names}})
        return view(*args, **kwargs)

    wrapper._refuses_query = True  # type: ignore[attr-defined]
    return wrapper


def plain_body(check: Callable[[Any], dict[str, Any] | None], *, as_kwargs: bool = False
               ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Put between ``@blp.route`` and ``@blp.requires`` of a hot JSON endpoint: a body that ``check`` accepts
    (it returns exactly what the endpoint's schema would load, None for anything unusual) goes straight to
    the view function, past webargs' and flask-smorest's wrappers (their bookkeeping costs a basket or rank
    answer about a tenth of its time). Any other body takes the full path, which words the error. The key is
    checked first either way, and the OpenAPI document is the full path's."""
    def decorator(full: Callable[..., Any]) -> Callable[..., Any]:
        view = inspect.unwrap(full)
        scope = full._tailor_scope  # type: ignore[attr-defined]  # set by Blueprint.requires

        @functools.wraps(full)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(scope)
            request = _request()
            data = request.get_data(cache=True)
            if data and is_json_request(request):
                try:
                    body = check(orjson.loads(data))
                except orjson.JSONDecodeError:
                    body = None
                if body is not None:
                    return view(*args, **kwargs, **body) if as_kwargs else view(*args, body, **kwargs)
            return full(*args, **kwargs)

        wrapper.full_path = full  # type: ignore[attr-defined]  # what any other body takes (tests compare both)
        return wrapper

    return decorator


class TailorApi(Api):
    """Api with the service's error envelope for every error, documented as the ``Error`` schema."""

    ERROR_SCHEMA = ErrorSchema

    def register_blueprint(self, blp: SmorestBlueprint, *, parameters: Any = None, **options: Any) -> None:
        """Register ``blp``; its ``/v1`` routes that declare no query parameters refuse every query string
        (``refuse_query_string``): one rule for every route, present and future, decided once here."""
        super().register_blueprint(blp, parameters=parameters, **options)
        app = self._app
        name = options.get("name", blp.name)
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith(API_PREFIX) or rule.endpoint.partition(".")[0] != name:
                continue
            view = app.view_functions[rule.endpoint]
            if not declares_query(view) and not getattr(view, "_refuses_query", False):
                app.view_functions[rule.endpoint] = refuse_query_string(view)

    def _register_error_handlers(self) -> None:
        self.ma_plugin.converter.add_attribute_function(_exclusive_range)
        app = self._app
        app.register_error_handler(HTTPException, self.handle_http_exception)
        app.register_error_handler(ServiceError, handle_service_error)
        app.register_error_handler(Exception, handle_unexpected)
        for name, scheme in SECURITY_SCHEMES.items():
            self.spec.components.security_scheme(name, scheme)

    def handle_http_exception(self, error: HTTPException) -> flask.Response:  # type: ignore[override]
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        details = data.get("errors", data.get("messages"))
        message = data.get("message") or _first_line(error.description) or error.name
        if details is not None and "message" not in data and status in (400, 422):
            message = "the request is invalid; see details"
        headers = {}
        allow = error.get_headers() if status == 405 else []
        for key, value in allow:
            if key.lower() == "allow":
                headers["Allow"] = value
        if status >= 500:
            log.error("HTTP %s on %s %s: %s", status, flask.request.method, flask.request.path, error.name)
        return error_response(status, STATUS_CODES.get(status, "error"), message, _jsonable(details), headers)


    #: Path parameters that ``path_id`` validates as ids (no control characters, 1-256 characters).
    ID_PATH_PARAMETERS = frozenset({"customer_id", "item_id"})
    #: Limits no schema can express (the whole request line, headers, body size): documented everywhere.
    LIMIT_RESPONSES: ClassVar[dict[int, str]] = {
        413: "the body is larger than TAILOR_MAX_BODY_BYTES (also when sent chunked)",
        414: "the request line (method, path and query) is longer than 4,094 bytes",
        431: "more than 100 header fields, or one longer than 8,190 bytes",
    }

    def finish_spec(self) -> None:
        """After every blueprint is registered: document the id rules of path ids, the limits' answers and the
        400 of an undeclared query parameter on every ``/v1`` operation."""
        from service.api.common_schemas import ID_PATTERN, MAX_ID_LENGTH

        document_rules(self.spec.components.schemas)
        for route, path in self.spec._paths.items():
            parameters = list(path.get("parameters", []))
            for operation in path.values():
                if isinstance(operation, dict):
                    parameters += operation.get("parameters", [])
            for parameter in parameters:
                if parameter.get("in") == "path" and parameter.get("name") in self.ID_PATH_PARAMETERS:
                    parameter["schema"] = {**parameter.get("schema", {}), "type": "string", "minLength": 1,
                                           "maxLength": MAX_ID_LENGTH, "pattern": ID_PATTERN}
            for operation in path.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                if route.startswith(API_PREFIX):  # an undeclared query parameter, even without a query schema
                    operation["responses"].setdefault("400", {"$ref": "#/components/responses/BAD_REQUEST"})
                for status, description in self.LIMIT_RESPONSES.items():
                    operation["responses"].setdefault(str(status), {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})


def document_rules(schemas: dict[str, Any]) -> None:
    """Rules between fields that marshmallow checks in code, written into the OpenAPI schemas too."""
    from service.domain.events import EVENT_TYPES, ITEM_TYPES

    event = schemas.get("Event")
    if event is not None:  # view / add_to_cart / purchase name an item
        event["anyOf"] = [
            {"properties": {"type": {"enum": [t for t in EVENT_TYPES if t not in ITEM_TYPES]}}},
            {"required": ["item_id"], "properties": {"item_id": {"type": "string", "minLength": 1}}},
        ]


def _exclusive_range(self: Any, field: ma.fields.Field, **kwargs: Any) -> dict[str, Any]:
    """``Range(min_inclusive=False)`` as ``exclusiveMinimum`` (apispec documents only ``minimum``)."""
    out: dict[str, Any] = {}
    for validator in field.validators:
        if isinstance(validator, ma.validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                out["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                out["exclusiveMaximum"] = True
    return out


def handle_service_error(error: ServiceError) -> flask.Response:
    return error_response(error.status, error.code, error.message, _jsonable(error.details))


def handle_unexpected(error: Exception) -> flask.Response:
    """Last resort: a bug must still answer JSON, and be logged with its traceback (never the headers)."""
    log.exception("unexpected error on %s %s", flask.request.method, flask.request.path)
    return error_response(500, "internal_error", "internal error; it has been logged")


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]


def _jsonable(value: Any) -> Any:
    """Validation messages may hold non-JSON keys (ints for list positions) or objects: normalise them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
