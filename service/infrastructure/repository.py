"""Every Redis read and write of the request path, behind the gateway's breaker and timeouts.

Key names come from ``redis_state.keys`` only; value formats from ``redis_state.codec`` and ``service.domain``.
A customer is read with one command (a Lua script returning the record of the served version, the live
overlay, the session and any extra keys of the customer's hash slot: one reply to parse instead of a
pipeline of three), and only when the worker's ``CustomerCache`` - kept exact by Redis' invalidation
messages - does not hold it; a batch of events costs two round trips (one script per customer, then the
stream).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis_state import keys
from scoring.history import SECONDS_PER_DAY
from service.domain.customer import (
    CustomerState,
    decode_record,
    live_value,
    parse_live,
    parse_session,
    session_value,
)
from service.domain.errors import Unavailable
from service.domain.events import Event, stream_fields, unique_by_id
from service.infrastructure.answer_memo import fingerprint
from service.infrastructure.customer_cache import CustomerCache
from service.infrastructure.feedback import apply_feedback, unattributed
from service.infrastructure.metrics import count_customer_read
from service.infrastructure.redis_client import RedisGateway
from service.infrastructure.scripts import Lua, ScriptCall, run_scripts
from settings import Settings

log = logging.getLogger("tailor.repository")

#: One customer's events of a batch (one slot: the customer's hashes and the events' idempotency markers).
#: Each event whose marker is new is recorded: a purchase in the live hash, a view / cart / click in the
#: session hash (ARGV per event: kind "l" | "s" | "-", field, value). Returns 1/0 per event (new or seen)
#: and then the session's length (0 when untouched), so an oversized session can be trimmed.
_ACCEPT = Lua("""
local out, live, session = {}, false, false
for i = 3, #KEYS do
  local at = 5 + (i - 3) * 3
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ARGV[2]) then
    out[#out + 1] = 1
    local kind = ARGV[at]
    if kind == 'l' then
      redis.call('HSET', KEYS[1], ARGV[at + 1], ARGV[at + 2])
      live = true
    elseif kind == 's' then
      redis.call('HSET', KEYS[2], ARGV[at + 1], ARGV[at + 2])
      session = true
    end
  else
    out[#out + 1] = 0
  end
end
if live then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if session then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  out[#out + 1] = redis.call('HLEN', KEYS[2])
else
  out[#out + 1] = 0
end
return out
""")

#: Append events to the stream in order, each as ``XADD KEY MAXLEN ~ ARGV[1] * fields...`` (ARGV per event:
#: the number of field/value strings, then them). One call instead of one command per event.
_APPEND = Lua("""
local at = 2
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
return 0
""")


#: A customer's record (GET), live overlay and session (HGETALL, flat) and extra keys (GET), in one call.
_READ_CUSTOMER = Lua("""
local out = {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
for i = 4, #KEYS do out[i] = redis.call('GET', KEYS[i]) end
return out
""")


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    values = iter(flat)
    return dict(zip(values, values, strict=True))


@dataclass(frozen=True)
class IngestResult:
    """Counts of one `POST /v1/events` batch."""

    received: int
    accepted: int
    duplicates: int
    unattributed: int = 0  # new clicks / conversions whose decision_id no decision takes


class Repository:
    """Redis access for customers, events, item overrides and model versions."""

    def __init__(self, gateway: RedisGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.customers = CustomerCache(gateway.reads, settings.customer_cache_size)

    # -- customers ------------------------------------------------------------------------------------
    def customer(self, customer_id: str, version: str) -> CustomerState:
        """Record + live overlay + session in one round trip; ``Unavailable`` when Redis is not answering."""
        return self.customer_read(customer_id, version, fingerprinted=False)[0]

    def customer_read(self, customer_id: str, version: str, *, fingerprinted: bool = True,
                      extra_keys: Sequence[str] = ()) -> tuple[CustomerState, bytes | None, list[bytes | None]]:
        """``customer`` plus a fingerprint of the raw values read (equal fingerprints: equal data; None when
        not ``fingerprinted``, as hashing would be wasted without a memo) and the values of ``extra_keys``,
        which must share the customer's hash slot (``keys.customer_*`` / ``keys.message_sticky``)."""
        cache = self.customers if self.customers.enabled and not extra_keys else None
        token = 0
        if cache is not None:
            cached = cache.get(customer_id, version)
            count_customer_read(cached is not None)
            if cached is not None:
                return cached[0], cached[1] if fingerprinted else None, []
            token = cache.token()
        script_keys = [keys.customer_history(version, customer_id), keys.customer_live(customer_id),
                       keys.customer_session(customer_id), *extra_keys]
        reply = self.gateway.call(lambda: _READ_CUSTOMER(self.gateway.reads, script_keys, ()))
        blob, live, session = reply[0], _pairs(reply[1]), _pairs(reply[2])
        state = CustomerState(customer_id, decode_record(blob), parse_live(live) if live else [],
                              parse_session(session, self.settings.session_max_items) if session else [])
        digest = fingerprint(blob, live, session) if fingerprinted or cache is not None else None
        if cache is not None and blob is not None:
            # Only customers with a record: records are not tracked (immutable per version), but an absent
            # one can appear - the version re-published after a Redis restart while workers serve it.
            cache.put(customer_id, version, (state, digest), token)
        return state, digest if fingerprinted else None, list(reply[3:])

    # -- events ---------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a batch idempotently (per customer and ``event_id``); ``Unavailable`` if Redis fails.

        Two round trips whatever the batch size: one ``_ACCEPT`` script per customer (its markers are
        ``SET NX`` with a TTL and only the events that won theirs are recorded in its hashes), then the new
        events are appended to the stream (one ``_APPEND``) and their feedback applied. If either fails,
        the markers it may have set are removed again so that the client's retry is not mistaken for a
        duplicate: recording an event twice changes nothing (hash fields are the event id / the item), and
        the retraining job drops repeated stream entries.
        """
        unique, repeated = unique_by_id(events)
        if not unique:
            return IngestResult(len(events), 0, repeated)
        now = time.time()
        by_customer: dict[str, list[Event]] = {}
        for event in unique:
            by_customer.setdefault(event.customer_id, []).append(event)
        try:
            new = self.gateway.call(lambda: self._accept(by_customer, f"{now:.3f}"))
        except Unavailable:
            self._unmark(unique)  # some customers' scripts may have run
            raise
        fresh = [event for event in unique if (event.customer_id, event.event_id) in new]
        outcomes: list[str] = []
        if fresh:
            try:
                outcomes = self.gateway.call(lambda: self._append(fresh, now))
            except Unavailable:
                self._unmark(fresh)
                raise
        return IngestResult(len(events), len(fresh), len(events) - len(fresh), unattributed(outcomes))

    def _accept(self, by_customer: dict[str, list[Event]], marker: str) -> set[tuple[str, str]]:
        """Run ``_ACCEPT`` for every customer (one pipeline); (customer, event id) of the new events."""
        s = self.settings
        calls: list[ScriptCall] = []
        static = [marker, s.event_dedupe_s, int(s.live_ttl_days * SECONDS_PER_DAY), s.session_ttl_s]
        for customer_id, group in by_customer.items():
            script_keys = [keys.customer_live(customer_id), keys.customer_session(customer_id),
                           *(keys.event_seen(customer_id, event.event_id) for event in group)]
            args = list(static)
            for event in group:
                if event.is_purchase:
                    args += ("l", event.event_id, live_value(event.item_id or "", event.day,
                                                             float(event.quantity or 1.0), event.price))
                elif event.is_session:
                    args += ("s", event.item_id or "", session_value(event.day, event.type))
                else:
                    args += ("-", "", "")
            calls.append((_ACCEPT, script_keys, args))
        replies = run_scripts(self.gateway.writes, calls)
        new: set[tuple[str, str]] = set()
        for (customer_id, group), reply in zip(by_customer.items(), replies, strict=True):
            *won, session_length = reply
            new.update((customer_id, event.event_id) for event, ok in zip(group, won, strict=True) if ok)
            if session_length > 2 * s.session_max_items:
                self._trim_session(customer_id)
        return new

    def _append(self, fresh: list[Event], now: float) -> list[str]:
        """The new events to the stream (batch order), then their rewards to promotions and messages (their
        outcomes are returned)."""
        args: list[Any] = [self.settings.events_maxlen]
        for event in fresh:
            fields = stream_fields(event, now)
            args.append(2 * len(fields))
            for name, value in fields.items():
                args += (name, value)
        run_scripts(self.gateway.writes, [(_APPEND, [keys.EVENTS_STREAM], args)])
        return apply_feedback(self.gateway.writes, fresh)

    def _trim_session(self, customer_id: str) -> None:
        """Keep a session hash small (it is read on every request): drop all but the newest items."""
        key = keys.customer_session(customer_id)
        entries = parse_session(self.gateway.writes.hgetall(key), limit=10**9)
        stale = [e.item_id for e in entries[self.settings.session_max_items:]]
        if stale:
            self.gateway.writes.hdel(key, *stale)

    def _unmark(self, events: list[Event]) -> None:
        """Best effort (Redis is failing already): forget these events' markers, one DEL per customer slot."""
        by_customer: dict[str, list[str]] = {}
        for event in events:
            by_customer.setdefault(event.customer_id, []).append(keys.event_seen(event.customer_id, event.event_id))

        def forget() -> None:
            pipe = self.gateway.writes.pipeline(transaction=False)
            for markers in by_customer.values():
                pipe.delete(*markers)
            pipe.execute()

        try:
            self.gateway.call(forget)
        except Unavailable as exc:
            log.warning("could not remove idempotency markers after a failed write: %s", exc)

    # -- items ----------------------------------------------------------------------------------------
    def set_item_override(self, item_id: str, active: bool) -> dict[str, Any]:
        """Store an item's active flag for every process (they pick it up at their next poll)."""
        override = {"active": bool(active), "updated_at": round(time.time(), 3)}

        def write() -> None:
            pipe = self.gateway.writes.pipeline(transaction=False)
            pipe.hset(keys.ITEM_OVERRIDES, item_id, json.dumps(override))
            pipe.incr(keys.ITEM_OVERRIDES_REV)
            pipe.execute()

        self.gateway.call(write)
        return override

    # -- models ---------------------------------------------------------------------------------------
    def model_versions(self, history_limit: int = 50) -> dict[str, Any]:
        """Published versions (newest first) with their metrics, and the latest version-history lines."""
        from redis_state.versions import list_versions

        def read() -> tuple[list[dict[str, Any]], list[bytes], bytes | None]:
            client = self.gateway.writes
            return list_versions(client), client.lrange(keys.MODEL_HISTORY, 0, history_limit - 1), \
                client.get(keys.ACTIVE_MODEL)

        versions, history, active = self.gateway.call(read)
        lines = []
        for raw in history:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return {"active": active.decode() if active else None, "versions": versions, "history": lines}

    def activate(self, version: str) -> None:
        """Make ``version`` the active one (``PublishError`` if it is not published)."""
        from redis_state.versions import activate_version

        self.gateway.call(lambda: activate_version(self.gateway.writes, version))

    def rollback(self) -> str:
        from redis_state.versions import rollback

        return self.gateway.call(lambda: rollback(self.gateway.writes))
