"""Request ids, per-request metrics and access logs of the API (the log format is in ``service.app.logs``;
the metrics themselves in ``service.infrastructure.metrics``).

The per-request cost is about 4 µs (6 µs with multi-process files; ``timeit`` in docs/SCALING.md): label
children are cached per (endpoint, method, status), so a request costs two ``perf_counter`` calls, one
dict lookup, a counter increment and a histogram observation. The access log line adds ~15 µs
(``TAILOR_ACCESS_LOG=false`` turns it off).

Every request gets an id (a valid ``X-Request-ID`` header, else a generated one) that is returned in the
response and appears in every log line written while serving it.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import TYPE_CHECKING, Any

import flask

from service.infrastructure.metrics import LATENCY, MODEL_ACTIVE, REQUESTS, render_metrics

if TYPE_CHECKING:
    from service.app.factory import Tailor

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is used only if it is short and made of safe characters (it lands in logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# -- request middleware --------------------------------------------------------------------------------
# The objects behind Flask's context proxies: one lookup each instead of one per attribute access.
_g = flask.g._get_current_object  # type: ignore[attr-defined]
_request = flask.request._get_current_object  # type: ignore[attr-defined]
_random_bits = random.getrandbits


class RequestObserver:
    """Request id, metrics and the access log line of every request (Flask before/after hooks)."""

    def __init__(self, tailor: Tailor, access_log: bool) -> None:
        self.tailor = tailor
        self.access_log = access_log
        self.log = logging.getLogger("tailor.access")
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._state: object = None

    def install(self, app: flask.Flask) -> None:
        app.before_request_funcs.setdefault(None, []).insert(0, self.before)
        app.after_request(self.after)

    def before(self) -> None:
        g = _g()
        g.t0 = time.perf_counter()
        given = _request().environ.get("HTTP_X_REQUEST_ID")
        # 128 random bits, as a client's id would be; the Mersenne Twister is reseeded in every forked worker
        # (the random module registers that), and unlike os.urandom it needs no system call.
        g.request_id = given if given and _REQUEST_ID.fullmatch(given) else f"{_random_bits(128):032x}"

    def after(self, response: flask.Response) -> flask.Response:
        g = _g()
        request = _request()
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        rule = request.url_rule
        endpoint = rule.endpoint if rule is not None else "unmatched"
        method = request.method
        status = response.status_code
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (endpoint, method, str(status))
            children = self._children.setdefault(key, (REQUESTS.labels(*labels), LATENCY.labels(*labels)))
        children[0].inc()
        children[1].observe(elapsed)
        state = self.tailor.store._state  # read-only peek: current() would start the poller
        if state is not self._state:
            self._model_changed(state)
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        if self.access_log and self.log.isEnabledFor(logging.INFO):  # no line, no fields to build
            path = request.path
            self.log.info("%s %s %s", method, path, status, extra={
                "method": method, "path": path, "endpoint": endpoint, "status": status,
                "duration_ms": round(elapsed * 1000, 3)})
        return response

    def _model_changed(self, state: Any) -> None:
        """Point the version gauge of this worker at the newly served version."""
        previous = getattr(getattr(self._state, "model", None), "version", None)
        version = getattr(getattr(state, "model", None), "version", None)
        self._state = state
        if previous == version:
            return
        if previous is not None:
            MODEL_ACTIVE.labels(previous).set(0)
        if version is not None:
            MODEL_ACTIVE.labels(version).set(1)


def metrics_view() -> flask.Response:
    """``GET /metrics``: Prometheus text format (scope from ``TAILOR_METRICS_SCOPE``)."""
    tailor = flask.current_app.extensions["tailor"]
    scope = tailor.settings.metrics_scope
    if scope != "public":
        from service.api.auth import authorize

        authorize(scope)
    body, content_type = render_metrics()
    return flask.Response(body, status=200, content_type=content_type)


def install(app: flask.Flask, tailor: Tailor) -> None:
    """Add the request hooks and ``GET /metrics`` to the app."""
    RequestObserver(tailor, tailor.settings.access_log).install(app)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
