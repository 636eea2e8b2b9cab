"""Tailor's Prometheus metrics: every counter, gauge and histogram, and the helpers that count.

Metrics are process-local counters; under gunicorn every worker writes them to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (set up by ``service.gunicorn_conf``) and ``GET /metrics`` - answered by any
worker - adds up the files of all workers, so the numbers are right whichever worker is scraped.
Labels are bounded: the Flask endpoint name (never the raw path), method and status; slot and promotion
ids (defined by admins); the model version.

``prometheus_client`` decides at import whether it writes multi-process files, so this module reads
``PROMETHEUS_MULTIPROC_DIR`` once at import too; gunicorn's master sets it (``gunicorn_conf.on_starting``)
before any worker imports either.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

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
UNATTRIBUTED_FEEDBACK = Counter(
    "tailor_unattributed_feedback_total",
    "Clicks and conversions whose decision_id no decision takes: unknown (never made here, or past the "
    "attribution window) or mismatch (made for another customer)", ["type", "reason"])


CUSTOMER_READS = Counter("tailor_customer_reads_total",
                         "Customer reads of recommendation requests: from the worker's cache or from Redis",
                         ["source"])
ANSWERS = Counter("tailor_answers_total", "Recommendation answers: remembered by this worker (memo), computed by "
                  "another process and read with the customer (shared), or computed", ["outcome"])
OUTCOME_MEMO, OUTCOME_SHARED, OUTCOME_COMPUTED = "memo", "shared", "computed"
_CUSTOMER_READ = {True: CUSTOMER_READS.labels("cache"), False: CUSTOMER_READS.labels("redis")}
_ANSWER = {outcome: ANSWERS.labels(outcome) for outcome in (OUTCOME_MEMO, OUTCOME_SHARED, OUTCOME_COMPUTED)}

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


def count_fallback() -> None:
    FALLBACKS.inc()


def count_customer_read(cached: bool) -> None:
    _CUSTOMER_READ[cached].inc()


def count_answer(outcome: str) -> None:
    _ANSWER[outcome].inc()


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


def count_unattributed(event_type: str, reason: str) -> None:
    UNATTRIBUTED_FEEDBACK.labels(event_type, reason).inc()


def count_feedback(kind: str, target: str, event_type: str, outcome: str) -> None:
    """One applied click/conversion: a bandit reward, or a promotion's counted feedback."""
    if kind == "message":
        if outcome == "rewarded":
            BANDIT_REWARDS.labels(target).inc()
    elif outcome == "counted":
        PROMOTION_FEEDBACK.labels(target, event_type).inc()
