"""Feedback from ``POST /v1/events``: clicks and conversions that carry a ``decision_id``.

A decision id names its kind and target (``targeting.new_decision_id``), so every event of a batch is
routed to its promotion's or message slot's Lua script without reading any definition, and the whole batch
costs one pipelined round trip. Each script counts an event type once per decision and checks that the
event's customer is the one the decision was made for; a deleted promotion or slot still counts (its report
is kept until purged).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from service.domain.targeting import as_text, parse_decision_id
from service.infrastructure import bandit_store, promotion_book
from service.infrastructure.metrics import count_feedback, count_unattributed
from service.infrastructure.scripts import ScriptCall, run_scripts

FEEDBACK_TYPES = frozenset({"click", "conversion"})
#: Outcomes of a click / conversion that no decision takes: the decision id was never made here (or its
#: attribution window has passed), or it was made for another customer.
UNATTRIBUTED = frozenset({"unknown", "mismatch"})


def apply_feedback(client: redis.Redis, events: Iterable[Any]) -> list[str]:
    """Apply every click/conversion with a decision id (objects with ``type``, ``decision_id``,
    ``customer_id``); returns one outcome per such event (see ``Bandit.reward``), ``unknown`` for a decision
    id that was not made here. Unattributed ones (``UNATTRIBUTED``) are counted in
    ``tailor_unattributed_feedback_total``."""
    calls: list[ScriptCall] = []
    applied: list[tuple[str, str, str]] = []
    malformed: list[str] = []
    for event in events:
        decision_id = getattr(event, "decision_id", None)
        if not decision_id or event.type not in FEEDBACK_TYPES:
            continue
        parsed = parse_decision_id(decision_id)
        if parsed is None:
            malformed.append(event.type)
            continue
        kind, target = parsed
        if kind == "message":
            lua, script_keys = bandit_store.REWARD, bandit_store.reward_keys(target, decision_id)
        else:
            lua, script_keys = promotion_book.FEEDBACK, promotion_book.feedback_keys(target, decision_id)
        calls.append((lua, script_keys, [event.type, event.customer_id or ""]))
        applied.append((kind, target, event.type))
    outcomes = [as_text(r) for r in run_scripts(client, calls)]
    for (kind, target, event_type), outcome in zip(applied, outcomes, strict=True):
        count_feedback(kind, target, event_type, outcome)
        if outcome in UNATTRIBUTED:
            count_unattributed(event_type, outcome)
    for event_type in malformed:
        count_unattributed(event_type, "unknown")
    return outcomes + ["unknown"] * len(malformed)


def unattributed(outcomes: Iterable[str]) -> int:
    """How many of ``apply_feedback``'s outcomes no decision took."""
    return sum(outcome in UNATTRIBUTED for outcome in outcomes)
