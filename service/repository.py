"""Every Redis read and write of the request path, behind the gateway's breaker and timeouts.

Key names come from ``service.keys`` only; value formats from ``service.codec`` and ``service.domain``.
A customer is read with one command (a Lua script returning the record of the served version, the live
overlay, the session and any extra keys of the customer's hash slot: one reply to parse instead of a
pipeline of three), and only when the worker's ``CustomerCache`` - kept exact by Redis' invalidation
messages - does not hold it; a batch of events costs two round trips (idempotency markers, then writes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service import keys
from service.answers import fingerprint
from service.config import Settings
from service.customer_cache import CustomerCache
from service.domain.customer import (
    CustomerState,
    decode_record,
    live_value,
    parse_live,
    parse_session,
    session_value,
)
from service.domain.events import Event, stream_fields, unique_by_id
from service.domain.feedback import apply_feedback
from service.domain.targeting import Lua, execute
from service.errors import Unavailable
from service.observability import count_customer_read
from service.redis_client import RedisGateway
from training.history import SECONDS_PER_DAY

log = logging.getLogger("tailor.repository")

#: Set fields of one customer hash, refresh its expiry and return its length (one key: cluster-safe).
_TOUCH = Lua("""
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HLEN', KEYS[1])
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
        if cache is not None:
            cache.put(customer_id, version, (state, digest), token)
        return state, digest if fingerprinted else None, list(reply[3:])

    # -- events ---------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a batch idempotently (per ``event_id``); raise ``Unavailable`` if Redis fails half-way.

        Markers are set first (``SET NX`` with a TTL), then only the events that won their marker are
        written. If the writes fail, the markers of this batch are removed again so the client's retry is
        not mistaken for a duplicate.
        """
        unique, repeated = unique_by_id(events)
        if not unique:
            return IngestResult(len(events), 0, repeated)
        now = time.time()
        marker = f"{now:.3f}"
        dedupe_s = self.settings.event_dedupe_s

        def mark() -> list[Any]:
            pipe = self.gateway.writes.pipeline(transaction=False)
            for event in unique:
                pipe.set(keys.event_seen(event.event_id), marker, nx=True, ex=dedupe_s)
            return pipe.execute()

        won = self.gateway.call(mark)
        fresh = [event for event, ok in zip(unique, won, strict=True) if ok]
        if fresh:
            try:
                self.gateway.call(lambda: self._write(fresh, now))
            except Unavailable:
                self._unmark(fresh)
                raise
        return IngestResult(len(events), len(fresh), len(events) - len(fresh))

    def _write(self, events: list[Event], now: float) -> None:
        """One pipeline: an XADD per event, then one ``_TOUCH`` script per customer hash (its fields, its
        expiry and, for sessions, its new length) instead of an HSET per event plus EXPIRE and HLEN."""
        s = self.settings
        pipe = self.gateway.writes.pipeline(transaction=False)
        live: dict[str, list[str]] = {}
        session: dict[str, list[str]] = {}
        for event in events:
            pipe.xadd(keys.EVENTS_STREAM, stream_fields(event, now), maxlen=s.events_maxlen, approximate=True)
            if event.is_purchase:
                live.setdefault(event.customer_id, []).extend((event.event_id, live_value(
                    event.item_id or "", event.day, float(event.quantity or 1.0), event.price)))
            elif event.is_session:
                session.setdefault(event.customer_id, []).extend((event.item_id or "",
                                                                   session_value(event.day, event.type)))
        scripted: dict[int, tuple[Lua, list[str], list[Any]]] = {}

        def touch(key: str, ttl: int, fields: list[str]) -> None:
            script_keys, args = [key], [ttl, *fields]
            scripted[len(pipe)] = (_TOUCH, script_keys, args)
            _TOUCH.queue(pipe, script_keys, args)

        live_ttl = int(s.live_ttl_days * SECONDS_PER_DAY)
        for customer_id, fields in live.items():
            touch(keys.customer_live(customer_id), live_ttl, fields)
        first_session = len(pipe)
        for customer_id, fields in session.items():
            touch(keys.customer_session(customer_id), s.session_ttl_s, fields)
        lengths = execute(self.gateway.writes, pipe, scripted)[first_session:]
        oversized = [c for c, n in zip(session, lengths, strict=True) if n > 2 * s.session_max_items]
        for customer_id in oversized:
            self._trim_session(customer_id)
        apply_feedback(self.gateway.writes, events)

    def _trim_session(self, customer_id: str) -> None:
        """Keep a session hash small (it is read on every request): drop all but the newest items."""
        key = keys.customer_session(customer_id)
        entries = parse_session(self.gateway.writes.hgetall(key), limit=10**9)
        stale = [e.item_id for e in entries[self.settings.session_max_items:]]
        if stale:
            self.gateway.writes.hdel(key, *stale)

    def _unmark(self, events: list[Event]) -> None:
        try:
            pipe = self.gateway.writes.pipeline(transaction=False)
            for event in events:
                pipe.delete(keys.event_seen(event.event_id))
            pipe.execute()
        except Exception as exc:  # best effort: Redis is failing already
            log.warning("could not remove idempotency markers after a failed write: %s", type(exc).__name__)

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
        from training.publish import list_versions

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
        from training.publish import activate_version

        self.gateway.call(lambda: activate_version(self.gateway.writes, version))

    def rollback(self) -> str:
        from training.publish import rollback

        return self.gateway.call(lambda: rollback(self.gateway.writes))
