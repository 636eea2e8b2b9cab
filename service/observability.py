"""Prometheus metrics, request ids and access logs of the API (the log format is in ``service.logs``).

Metrics are process-local counters; under gunicorn every worker writes them to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (set up by ``service.gunicorn_conf``) and ``GET /metrics`` - answered by any
worker - adds up the files of all workers, so the numbers are right whichever worker is scraped.
Labels are bounded: the Flask endpoint name (never the raw path), method and status; slot and promotion
ids (defined by admins); the model version.

The per-request cost is about 4 µs (6 µs with multi-process files; ``timeit`` in docs/SCALING.md): label
children are cached per (endpoint, method, status), so a request costs two ``perf_counter`` calls, one
dict lookup, a counter increment and a histogram observation. The access log line adds ~15 µs
(``TAILOR_ACCESS_LOG=false`` turns it off).

Every request gets an id (a valid ``X-Request-ID`` header, else a generated one) that is returned in the
response and appears in every log line written while serving it.

``prometheus_client`` decides at import whether it writes multi-process files, so this module reads
``PROMETHEUS_MULTIPROC_DIR`` once at import too; gunicorn's master sets it (``gunicorn_conf.on_starting``)
before any worker imports either.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from service import Tailor

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is used only if it is short and made of safe characters (it lands in logs).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REQUESTS = Counter("tailor_http_requests_total", "HTTP requests by endpoint (Flask endpoint name), method, status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("tailor_http_request_duration_seconds", "Time in the app per request (seconds)",
                    ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS)
FALLBACKS = Counter("tailor_fallback_answers_total",
                    "Recommendations answered from the in-memory popular list because Redis was unavailable")
MODEL_ACTIVE = Gauge("tailor_model_active", "1 for the model version served by live workers (0: served before)",
                     ["version"], multiprocess_mode="livemax")
EVENTS_RECEIVED = Counter("tailor_events_received_total", "Events received by POST /v1/events, by type", ["type"])
EVENTS_INGESTED = Counter("tailor_events_ingested_total", "Events of POST /v1/events by outcome",
                          ["outcome"])
BANDIT_DECISIONS = Counter("tailor_bandit_decisions_total", "Message variants served, per slot and policy",
                           ["slot", "variant", "policy"])
BANDIT_REWARDS = Counter("tailor_bandit_rewards_total", "Rewards (first click/conversion of a decision) per slot",
                         ["slot"])
PROMOTION_IMPRESSIONS = Counter("tailor_promotion_impressions_total", "Promotions served (within caps/budgets)",
                                ["promotion"])
PROMOTION_FEEDBACK = Counter("tailor_promotion_feedback_total", "Counted clicks and conversions per promotion",
                             ["promotion", "type"])


CUSTOMER_READS = Counter("tailor_customer_reads_total",
                         "Customer reads of recommendation requests: from the worker's cache or from Redis",
                         ["source"])
ANSWERS = Counter("tailor_answers_total", "Recommendation answers: remembered (memo) or computed", ["outcome"])
_CUSTOMER_READ = {True: CUSTOMER_READS.labels("cache"), False: CUSTOMER_READS.labels("redis")}
_ANSWER = {True: ANSWERS.labels("memo"), False: ANSWERS.labels("computed")}

#: The multi-process metric files' directory as prometheus_client saw it at import (None: in-memory metrics).
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics() -> tuple[bytes, str]:
    """The exposition text: all workers' files in multi-process mode, else this process's registry."""
    if MULTIPROCESS_DIR:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they are part of the totals)."""
    if MULTIPROCESS_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- request middleware --------------------------------------------------------------------------------
# The objects behind Flask's context proxies: one lookup each instead of one per attribute access.
_g = flask.g._get_current_object  # type: ignore[attr-defined]
_request = flask.request._get_current_object  # type: ignore[attr-defined]


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
        g.request_id = given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()

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
        if self.access_log:
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
        from service.auth import authorize

        authorize(scope)
    body, content_type = render_metrics()
    return flask.Response(body, status=200, content_type=content_type)


def install(app: flask.Flask, tailor: Tailor) -> None:
    """Add the request hooks and ``GET /metrics`` to the app."""
    RequestObserver(tailor, tailor.settings.access_log).install(app)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])


# -- domain counters (called by the use cases) ---------------------------------------------------------
def count_fallback() -> None:
    FALLBACKS.inc()


def count_customer_read(cached: bool) -> None:
    _CUSTOMER_READ[cached].inc()


def count_answer(remembered: bool) -> None:
    _ANSWER[remembered].inc()


def count_events(types: Iterable[str], accepted: int, duplicates: int) -> None:
    """Counts of one batch: one increment per event type, not per event (each costs a lock and a write to
    the shared metric file under gunicorn)."""
    for event_type, count in collections.Counter(types).items():
        EVENTS_RECEIVED.labels(event_type).inc(count)
    if accepted:
        EVENTS_INGESTED.labels("accepted").inc(accepted)
    if duplicates:
        EVENTS_INGESTED.labels("duplicate").inc(duplicates)


def count_decision(slot: str, variant: str, policy: str) -> None:
    BANDIT_DECISIONS.labels(slot, variant, policy).inc()


def count_impressions(promotion_ids: Iterable[str]) -> None:
    for promotion_id in promotion_ids:
        PROMOTION_IMPRESSIONS.labels(promotion_id).inc()


def count_feedback(kind: str, target: str, event_type: str, outcome: str) -> None:
    """One applied click/conversion: a bandit reward, or a promotion's counted feedback."""
    if kind == "message":
        if outcome == "rewarded":
            BANDIT_REWARDS.labels(target).inc()
    elif outcome == "counted":
        PROMOTION_FEEDBACK.labels(target, event_type).inc()
