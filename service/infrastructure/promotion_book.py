"""Promotions in Redis: definitions (cached per process), serving with exact caps and budgets, feedback.

Serving a promotion is one Lua script on the promotion's hash slot that checks the total budget and the
customer's sliding-window frequency cap and, only if both allow it, counts the impression, so caps and
budgets hold exactly however many API processes serve concurrently. A ``conversion`` event carrying the
decision id counts one redemption (the decision remembers that it was redeemed); a ``click`` one click.
The rules themselves (eligibility, ranking, reports) are pure: ``service.domain.promotions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from redis_state import keys
from service.domain.promotion_ranking import Candidate, Served, TargetIndex, rank
from service.domain.promotions import Budget, Promotion, promotion_report, validate
from service.domain.targeting import (
    Catalogue,
    CustomerFacts,
    DefinitionError,
    as_text,
    check_identifier,
    new_decision_id,
)
from service.infrastructure.definitions import DefinitionStore
from service.infrastructure.scripts import Lua, ScriptCall, run_scripts

#: Lua shared by ``SERVE`` and ``PEEK`` (KEYS[1] stats; ARGV: now_ms, cap_k (-1 none), window_ms,
#: budget_impressions (-1), budget_redemptions (-1)): 'budget' when a budget is spent; sets ``now`` and ``k``.
_BUDGET = """
local now = tonumber(ARGV[1])
local bi, br = tonumber(ARGV[4]), tonumber(ARGV[5])
if bi >= 0 and tonumber(redis.call('HGET', KEYS[1], 'impressions') or '0') >= bi then return 'budget' end
if br >= 0 and tonumber(redis.call('HGET', KEYS[1], 'redemptions') or '0') >= br then return 'budget' end
local k = tonumber(ARGV[2])
"""

#: Serve one promotion to one customer if its budget and the customer's cap allow. KEYS: stats, cap,
#: decision; ARGV: ``_BUDGET``'s five, then decision_id, customer_id, ttl_s, position.
SERVE = Lua(_BUDGET + """
if k >= 0 then
  local window = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  if redis.call('ZCARD', KEYS[2]) >= k then return 'cap' end
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], window)
end
redis.call('HINCRBY', KEYS[1], 'impressions', 1)
redis.call('HINCRBY', KEYS[1], 'pos:' .. ARGV[9], 1)
redis.call('HSET', KEYS[3], 'c', ARGV[7], 't', ARGV[1], 'pos', ARGV[9])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[8]))
return 'ok'
""")

#: ``SERVE``'s checks without its writes: what it would answer now (a preview). KEYS: stats, cap; ARGV:
#: ``_BUDGET``'s five. The cap window holds the decisions served after ``now - window``, exactly those
#: ``SERVE`` keeps after trimming.
PEEK = Lua(_BUDGET + """
if k >= 0 then
  local since = string.format('(%d', now - tonumber(ARGV[3]))
  if redis.call('ZCOUNT', KEYS[2], since, '+inf') >= k then return 'cap' end
end
return 'ok'
""")


FEEDBACK = Lua("""
-- KEYS: stats, decision ; ARGV: event type (click | conversion), customer_id ('' = do not check)
if redis.call('EXISTS', KEYS[2]) == 0 then return 'unknown' end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'c') ~= ARGV[2] then return 'mismatch' end
local flag, counter = 'clicked', 'clicks'
if ARGV[1] == 'conversion' then flag, counter = 'redeemed', 'redemptions' end
if redis.call('HSETNX', KEYS[2], flag, '1') == 0 then return 'duplicate' end
redis.call('HINCRBY', KEYS[1], counter, 1)
return 'counted'
""")


def feedback_keys(promotion_id: str, decision_id: str) -> list[str]:
    """KEYS of ``FEEDBACK``."""
    return [keys.promotion_stats(promotion_id), keys.promotion_decision(promotion_id, decision_id)]


def _serve_args(p: Promotion, decision_id: str, customer_id: str, now_ms: int, ttl_s: int,
                position: int) -> list[Any]:
    cap_k, window = (-1, 0) if p.cap is None else (p.cap.impressions, int(p.cap.days * 86_400_000))
    budget = p.budget or Budget()
    return [now_ms, cap_k, window, -1 if budget.impressions is None else budget.impressions,
            -1 if budget.redemptions is None else budget.redemptions, decision_id, customer_id, ttl_s, position]


class PromotionBook:
    """Promotions of the whole service: definitions (cached per process), serving, feedback, reports."""

    def __init__(self, *, poll_s: float = 0.5, attribution_days: float = 7.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store: DefinitionStore[Promotion] = DefinitionStore(
            keys.PROMOTIONS, keys.PROMOTIONS_DELETED, keys.PROMOTIONS_REV, Promotion.from_document, poll_s=poll_s,
            noun="promotion", id_field="promotion_id")
        self.index = TargetIndex()
        self.attribution_s = int(attribution_days * 86_400)
        self.clock = clock
        self._exhausted: dict[str, float] = {}

    # -- definitions ----------------------------------------------------------------------------------
    def put(self, client: redis.Redis, promotion_id: str, body: Mapping[str, Any], catalogue: Catalogue | None,
            stages: Sequence[str]) -> tuple[Promotion, bool]:
        """Validate and store; returns the stored promotion and whether it was created."""
        check_identifier(promotion_id, "promotion_id")
        existing, _ = self.store.load(client, promotion_id)
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        created = existing.get("created_at") if existing else None
        try:
            promotion = Promotion.from_document({**body, "promotion_id": promotion_id, "created_at": created or now,
                                                 "updated_at": now})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DefinitionError({"body": f"malformed promotion: {exc}"}) from None
        validate(promotion, catalogue, stages)
        is_new = self.store.put(client, promotion_id, promotion.to_document())
        return promotion, is_new

    def get(self, client: redis.Redis, promotion_id: str, *, deleted_ok: bool = False) -> tuple[Promotion, bool]:
        return self.store.get(client, promotion_id, deleted_ok=deleted_ok)

    def list(self, client: redis.Redis) -> list[Promotion]:
        docs = self.store.load_all(client)
        return sorted((Promotion.from_document(d) for d in docs.values()), key=lambda p: p.promotion_id)

    def delete(self, client: redis.Redis, promotion_id: str, *, purge: bool = False) -> None:
        """Delete (reports stay readable) or, with ``purge``, remove the definition and all its data."""
        self.store.remove(client, promotion_id,
                          purge_pattern=keys.promotion_pattern(promotion_id) if purge else None)

    # -- serving --------------------------------------------------------------------------------------
    def candidates(self, client: redis.Redis, customer: CustomerFacts, catalogue: Catalogue | None,
                   scores: np.ndarray | None, inactive: frozenset[int] = frozenset()) -> list[Candidate]:
        now_mono = time.monotonic()
        skip = [pid for pid, until in list(self._exhausted.items()) if until > now_mono]
        return rank(self.store.cached(client).values(), customer, catalogue, scores,
                    datetime.fromtimestamp(self.clock(), tz=UTC), index=self.index,
                    inactive=inactive, skip=skip)

    def serve(self, client: redis.Redis, candidates: Sequence[Candidate], customer_id: str, n: int) -> list[Served]:
        """Count impressions for up to n candidates in rank order, skipping those at their cap or budget.

        One pipelined round trip for the first n; another only when some of them were refused.
        """
        now_ms = int(self.clock() * 1000)

        def call(candidate: Candidate, position: int) -> tuple[str | None, ScriptCall]:
            pid = candidate.promotion.promotion_id
            decision_id = new_decision_id("p", pid)
            script_keys = [keys.promotion_stats(pid), keys.promotion_cap(pid, customer_id),
                           keys.promotion_decision(pid, decision_id)]
            return decision_id, (SERVE, script_keys, _serve_args(candidate.promotion, decision_id, customer_id,
                                                                  now_ms, self.attribution_s, position))

        return self._walk(client, candidates, n, call)

    def preview(self, client: redis.Redis, candidates: Sequence[Candidate], customer_id: str,
                n: int) -> list[Served]:
        """What ``serve`` would answer now, written nowhere: the same candidates in the same order, those at
        their cap or budget skipped (``PEEK``), no impression, cap use or decision (``decision_id`` None)."""
        now_ms = int(self.clock() * 1000)

        def call(candidate: Candidate, position: int) -> tuple[str | None, ScriptCall]:
            pid = candidate.promotion.promotion_id
            args = _serve_args(candidate.promotion, "", customer_id, now_ms, self.attribution_s, position)[:5]
            return None, (PEEK, [keys.promotion_stats(pid), keys.promotion_cap(pid, customer_id)], args)

        return self._walk(client, candidates, n, call)

    def _walk(self, client: redis.Redis, candidates: Sequence[Candidate], n: int,
              call: Callable[[Candidate, int], tuple[str | None, ScriptCall]]) -> list[Served]:
        """Up to n candidates in rank order whose script (``call(candidate, position)``) answers ``ok``: the
        first n in one round trip, the next ones only when some were refused. Serving and its preview share
        it, so a preview leaves out exactly what serving would."""
        served: list[Served] = []
        queue = list(candidates)
        while queue and len(served) < n:
            batch, queue = queue[: n - len(served)], queue[n - len(served):]
            calls: list[ScriptCall] = []
            ids: list[str | None] = []
            for i, candidate in enumerate(batch):
                decision_id, script = call(candidate, len(served) + i + 1)
                ids.append(decision_id)
                calls.append(script)
            results = run_scripts(client, calls)
            for candidate, decision_id, result in zip(batch, ids, results, strict=True):
                outcome = as_text(result)
                if outcome == "ok":
                    served.append(Served(candidate, decision_id))
                elif outcome == "budget":
                    self._exhausted[candidate.promotion.promotion_id] = time.monotonic() + 1.0
        return served

    def feedback(self, client: redis.Redis, promotion_id: str, decision_id: str, event_type: str,
                 customer_id: str | None = None) -> str:
        """Count a click or a redemption of one served promotion, once per decision.

        Returns ``counted``, ``duplicate``, ``unknown`` (no such decision, or past the attribution window),
        ``mismatch`` (another customer's decision) or ``ignored`` (another event type).
        """
        if event_type not in ("click", "conversion"):
            return "ignored"
        return as_text(FEEDBACK(client, feedback_keys(promotion_id, decision_id), [event_type, customer_id or ""]))

    # -- reports --------------------------------------------------------------------------------------
    def report(self, client: redis.Redis, promotion_id: str) -> dict[str, Any]:
        promotion, deleted = self.get(client, promotion_id, deleted_ok=True)
        raw = client.hgetall(keys.promotion_stats(promotion_id))
        return promotion_report(promotion, {k.decode(): int(v) for k, v in raw.items()}, deleted=deleted,
                                now=datetime.fromtimestamp(self.clock(), tz=UTC))
