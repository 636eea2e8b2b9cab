"""Every Redis read and write of the request path, behind the gateway's breaker and timeouts.

Key names come from ``redis_state.keys`` only; value formats from ``redis_state.codec`` and ``service.domain``.
A customer is read with one command (a Lua script returning the record of the served version, the live
overlay, the session and any extra keys of the customer's hash slot: one reply to parse instead of a
pipeline of three), and only when the worker's ``CustomerCache`` - kept exact by Redis' invalidation
messages - does not hold it; a batch of events costs four round trips (one script per hash slot of its
customers, so one in all on a single Redis; the stream; the commit per slot; the append markers' grace TTLs):
see ``Repository.ingest``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis_state import keys
from scoring.history import SECONDS_PER_DAY
from service.domain.customer import CustomerState, live_value, session_value
from service.domain.errors import Unavailable
from service.domain.events import Event, stream_fields, unique_by_id
from service.infrastructure.customer_cache import CustomerCache
from service.infrastructure.customer_reads import (
    READ_CUSTOMER,
    customer_keys,
    decode_customer,
    published_customers,
    read_call,
)
from service.infrastructure.feedback import apply_feedback, unattributed
from service.infrastructure.metrics import count_customer_read
from service.infrastructure.redis_client import RedisGateway, group_by_slot, send_commands
from service.infrastructure.scripts import Lua, ScriptCall, run_scripts
from settings import Settings

log = logging.getLogger("tailor.repository")

#: The events of a batch for the customers of one hash slot (on a single Redis: every customer of the batch),
#: per customer their hashes and the events' idempotency markers. An event's marker is "p" (pending:
#: recorded in the customer's hashes, maybe not yet in the stream) from this script until ``_COMMIT`` makes it
#: "c" (in the stream); markers written before this scheme hold a timestamp and count as committed. Each event
#: without a marker gets a pending one and is recorded: a purchase in the live hash, a view / cart / click in
#: the session hash. KEYS per customer: live hash, session hash, the events' markers; ARGV: the three TTLs,
#: the session size ``keep``, then per customer the number of its events and per event kind "l" | "s" | "-",
#: field, value. Returns per customer, per event 1 (new), 2 (pending: an earlier attempt stopped before its
#: commit, so the event must be appended again - idempotently) or 0 (committed: a duplicate). A session that
#: grew past 2 x ``keep`` items is cut to its ``keep`` newest here (values ``[day, type]``; unreadable ones
#: go first), not by the API in two more round trips. One call per slot instead of one per customer: on a
#: batch of 100 customers the per-call cost (packing, the script's set-up, the reply) was most of the work.
_ACCEPT = Lua("""
local out, k, at, keep = {}, 1, 5, tonumber(ARGV[4])
while k <= #KEYS do
  local live_key, session_key, n = KEYS[k], KEYS[k + 1], tonumber(ARGV[at])
  local live, session = false, false
  at = at + 1
  for i = k + 2, k + 1 + n do
    local seen = redis.call('GET', KEYS[i])
    if not seen then
      local kind = ARGV[at]
      if kind == 'l' then
        redis.call('HSET', live_key, ARGV[at + 1], ARGV[at + 2])
        live = true
      elseif kind == 's' then
        redis.call('HSET', session_key, ARGV[at + 1], ARGV[at + 2])
        session = true
      end
      redis.call('SET', KEYS[i], 'p', 'EX', ARGV[1])
      out[#out + 1] = 1
    elseif seen == 'p' then
      out[#out + 1] = 2
    else
      out[#out + 1] = 0
    end
    at = at + 3
  end
  if live then redis.call('EXPIRE', live_key, ARGV[2]) end
  if session then
    redis.call('EXPIRE', session_key, ARGV[3])
    if redis.call('HLEN', session_key) > 2 * keep then
      local flat, entries, stale = redis.call('HGETALL', session_key), {}, {}
      for j = 1, #flat, 2 do
        local ok, value = pcall(cjson.decode, flat[j + 1])
        local day = ok and type(value) == 'table' and tonumber(value[1]) or -1e300
        entries[#entries + 1] = {flat[j], day}
      end
      table.sort(entries, function(a, b) return a[2] > b[2] end)
      for j = keep + 1, #entries do stale[#stale + 1] = entries[j][1] end
      redis.call('HDEL', session_key, unpack(stale))
    end
  end
  k = k + 2 + n
end
return out
""")

#: Append events to the stream in order, each at most once: KEYS[1] is the stream, KEYS[1 + i] the append
#: marker of event i (``keys.event_appended``, in the stream's slot); an event is ``XADD``ed (``MAXLEN ~
#: ARGV[1]``) only if it has no marker, and the marker is set right after (``EX ARGV[2]``). ARGV per event:
#: the number of field/value strings, then them. One script, one slot: a script's effects replicate and
#: reach the AOF as one MULTI/EXEC, so markers and entries are there together or not at all. Each marker
#: is written *after* its entry (and ``_ACCEPT`` sets its marker after recording the event): a script
#: stopped by an error keeps the writes done before it, and must never leave a marker without its data.
#: Returns 1/0 per event (added now / was already in the stream).
_APPEND = Lua("""
local out, at = {}, 3
for i = 2, #KEYS do
  local n = tonumber(ARGV[at])
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, at + 1, at + n))
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[2])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  at = at + n + 1
end
return out
""")

#: The events of the customers of one slot are in the stream: their pending markers become committed (TTL kept).
_COMMIT = Lua("""
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 'p' then redis.call('SET', KEYS[i], 'c', 'KEEPTTL') end
end
return #KEYS
""")

#: Committed events' append markers (all in the stream's slot) get the grace TTL ``ARGV[1]``: one call per batch.
_GRACE = Lua("""
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return #KEYS
""")

#: After its commit an append marker is kept this long (not deleted): a request that found the event
#: pending just before the commit may still be on its way to ``_APPEND`` and must find the marker there.
APPENDED_GRACE_S = 300
#: A request whose accept step is older than this does not append events it found pending (it answers 503
#: and the client's retry starts afresh), so it can never outlive the grace above.
PENDING_APPEND_MAX_AGE_S = APPENDED_GRACE_S / 3


#: Customers per round trip when a worker reads them ahead of their requests (``Repository.read_ahead``).
READ_AHEAD_BATCH = 256
#: How long a shared answer is kept (seconds): a customer's next visit within it costs no scoring.
ANSWERS_TTL_S = 3600


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
        # Off in cluster mode: BCAST tracking is per node, so every worker would need two connections to every
        # primary, re-made on each failover, to stay exact (docs/SCALING.md says what that would cost).
        cache_size = 0 if settings.redis_cluster else settings.customer_cache_size
        self.customers = CustomerCache(gateway.background, cache_size)

    # -- customers ------------------------------------------------------------------------------------
    def customer(self, customer_id: str, version: str) -> CustomerState:
        """Record + live overlay + session in one round trip; ``Unavailable`` when Redis is not answering."""
        return self.customer_read(customer_id, version, fingerprinted=False)[0]

    def customer_read(self, customer_id: str, version: str, *, fingerprinted: bool = True,
                      extra_keys: Sequence[str] = (), answer_field: Callable[[], bytes] | None = None,
                      ) -> tuple[CustomerState, bytes | None, list[bytes | None]]:
        """``customer`` plus a fingerprint of the raw values read (equal fingerprints: equal data; None when
        not ``fingerprinted``, as hashing would be wasted without a memo) and the values of ``extra_keys``,
        which must share the customer's hash slot (``keys.customer_*`` / ``keys.message_sticky``).

        With ``answer_field`` (instead of ``extra_keys``; called only when Redis is read) the last item is
        ``[the shared answer stored under that field by ``store_answer``, or None]``, read in the same round
        trip; ``[]`` when the customer came from the worker's cache (no round trip at all)."""
        cache = self.customers if self.customers.enabled and not extra_keys else None
        token = 0
        if cache is not None:
            cached = cache.get(customer_id, version)
            count_customer_read(cached is not None)
            if cached is not None:
                return cached[0], cached[1] if fingerprinted else None, []
            token = cache.token()
        script_keys = [*customer_keys(version, customer_id), *extra_keys]
        args: tuple[bytes, ...] = ()
        if answer_field is not None:
            script_keys.append(keys.customer_answers(version, customer_id))
            args = (answer_field(),)
        # The hiredis-packed path (``run_scripts``): redis-py's command layers cost more than Redis spends here.
        reply = self.gateway.call(lambda: run_scripts(self.gateway.reads, [(READ_CUSTOMER, script_keys, args)])[0])
        state, digest = decode_customer(customer_id, reply, self.settings.session_max_items)
        if cache is not None and reply[0] is not None:
            # Only customers with a record: records are not tracked (immutable per version), but an absent
            # one can appear - the version re-published after a Redis restart while workers serve it.
            cache.put(customer_id, version, (state, digest), token)
        return state, digest if fingerprinted else None, list(reply[3:])

    def read_ahead(self, version: str, limit: int) -> Iterator[tuple[str, CustomerState, bytes]]:
        """The customers published with ``version`` (at most ``limit``), read in pipelined batches before they
        ask for anything, each with its fingerprint, and kept in the customer cache while it has room (never
        pushing out a customer a request read). A batch is read after taking the cache's token, so a customer
        whose data changes meanwhile is not stored: the cache stays exact. Off the request path: its own
        client and timeouts, no breaker."""
        client = self.gateway.loads
        cache = self.customers if self.customers.enabled else None
        for ids in published_customers(client, version, limit, READ_AHEAD_BATCH):
            token = cache.token() if cache is not None else 0
            replies = run_scripts(client, [read_call(version, customer_id) for customer_id in ids])
            for customer_id, reply in zip(ids, replies, strict=True):
                if reply[0] is None:  # deleted since the scan (an old version pruned)
                    continue
                state, digest = decode_customer(customer_id, reply, self.settings.session_max_items)
                if cache is not None:
                    cache.put(customer_id, version, (state, digest), token, evict=False)
                yield customer_id, state, digest

    def shared_answer(self, customer_id: str, version: str, field: bytes) -> bytes | None:
        """The answer stored under ``field`` by ``store_answer`` (for a customer read from the worker's cache,
        whose read brought none); None when absent or when Redis does not answer (the caller computes it)."""
        key = keys.customer_answers(version, customer_id)
        with contextlib.suppress(Unavailable):
            return self.gateway.call(lambda: send_commands(self.gateway.reads, [("HGET", key, field)])[0])
        return None

    def store_answer(self, customer_id: str, version: str, field: bytes, value: bytes) -> None:
        """Share a finished answer with every API process (``customer_read(answer_field=...)``); best effort:
        an answer that could not be stored is computed again by whoever needs it."""
        key = keys.customer_answers(version, customer_id)
        with contextlib.suppress(Unavailable):
            self.gateway.call(lambda: send_commands(self.gateway.writes, [("HSET", key, field, value),
                                                                           ("EXPIRE", key, ANSWERS_TTL_S)]))

    # -- events ---------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a batch so that each event reaches the stream exactly once; ``Unavailable`` if Redis fails
        before the batch's events are all in the stream (the client retries with the same ids).

        1. ``_ACCEPT``, one script per customer slot (one pipeline): new events get a *pending* marker and
           are recorded in the customer's hashes; events found pending (an earlier attempt stopped before
           its commit) are carried on; committed ones are duplicates.
        2. ``_APPEND``, one script in the stream's slot: every new or pending event is added unless its
           append marker says an earlier attempt added it already. From here on the events are in the
           stream and the answer is 200, whatever happens next.
        3. Feedback of the events added now (rewards of clicks / conversions with a ``decision_id``).
        4. ``_COMMIT`` per customer slot: the markers become committed; then the append markers are given a
           short grace TTL. Failures of 3 and 4 are logged: a retry finds the events pending or committed,
           and the append markers keep a re-append out of the stream.

        No step spans two slots and no step needs another to have succeeded except in this order, so any
        crash (before, between or after any step, and an AOF replay, which applies a script whole or not
        at all) leaves each event either absent everywhere, pending, or in the stream once.
        """
        unique, repeated = unique_by_id(events)
        if not unique:
            return IngestResult(len(events), 0, repeated)
        now = time.time()
        started = time.monotonic()
        by_customer: dict[str, list[Event]] = {}
        for event in unique:
            by_customer.setdefault(event.customer_id, []).append(event)
        states = self.gateway.call(lambda: self._accept(by_customer))
        todo = [event for event in unique if states[(event.customer_id, event.event_id)]]
        if not todo:
            return IngestResult(len(events), 0, len(events))
        if any(states[(e.customer_id, e.event_id)] == 2 for e in todo) and \
                time.monotonic() - started > PENDING_APPEND_MAX_AGE_S:
            raise Unavailable("the event batch took too long; send it again")
        added = self.gateway.call(lambda: self._append(todo, now))
        outcomes = self._finish(todo, added)
        return IngestResult(len(events), len(todo), len(events) - len(todo), unattributed(outcomes))

    def _accept(self, by_customer: dict[str, list[Event]]) -> dict[tuple[str, str], int]:
        """Run ``_ACCEPT`` once per slot of the batch's customers (one pipeline); (customer, event id) -> 1 new /
        2 pending / 0 seen."""
        s = self.settings
        static = [s.event_dedupe_s, int(s.live_ttl_days * SECONDS_PER_DAY), s.session_ttl_s, s.session_max_items]
        groups = group_by_slot(self.gateway.writes, list(by_customer), keys.customer_live)
        calls: list[ScriptCall] = []
        for group in groups:
            script_keys: list[str] = []
            args: list[Any] = list(static)
            for customer_id in group:
                events = by_customer[customer_id]
                script_keys += (keys.customer_live(customer_id), keys.customer_session(customer_id),
                                *(keys.event_seen(customer_id, event.event_id) for event in events))
                args.append(len(events))
                for event in events:
                    if event.is_purchase:
                        args += ("l", event.event_id, live_value(event.item_id or "", event.day,
                                                                 float(event.quantity or 1.0), event.price))
                    elif event.is_session:
                        args += ("s", event.item_id or "", session_value(event.day, event.type))
                    else:
                        args += ("-", "", "")
            calls.append((_ACCEPT, script_keys, args))
        replies = run_scripts(self.gateway.writes, calls)
        states: dict[tuple[str, str], int] = {}
        for group, reply in zip(groups, replies, strict=True):
            marks = iter(reply)
            for customer_id in group:
                for event in by_customer[customer_id]:
                    states[(customer_id, event.event_id)] = int(next(marks))
        return states

    def _append(self, todo: list[Event], now: float) -> list[Event]:
        """``_APPEND`` the events (batch order); the events added to the stream by this call."""
        args: list[Any] = [self.settings.events_maxlen, self.settings.event_dedupe_s + APPENDED_GRACE_S]
        for event in todo:
            fields = stream_fields(event, now)
            args.append(2 * len(fields))
            for name, value in fields.items():
                args += (name, value)
        script_keys = [keys.EVENTS_STREAM, *(keys.event_appended(e.customer_id, e.event_id) for e in todo)]
        reply = run_scripts(self.gateway.writes, [(_APPEND, script_keys, args)])[0]
        return [event for event, ok in zip(todo, reply, strict=True) if ok]

    def _finish(self, todo: list[Event], added: list[Event]) -> list[str]:
        """Steps 3 and 4 (the events are in the stream already): best effort, a failure is only logged.
        Returns the feedback outcomes of the events added (``apply_feedback``)."""
        outcomes: list[str] = []
        try:
            if added:
                outcomes = self.gateway.call(lambda: apply_feedback(self.gateway.writes, added))
        except Unavailable as exc:
            log.warning("could not apply the feedback of an event batch: %s", exc)
        markers: dict[str, list[str]] = {}
        for event in todo:
            markers.setdefault(event.customer_id, []).append(keys.event_seen(event.customer_id, event.event_id))
        commits = [(_COMMIT, [marker for customer_id in group for marker in markers[customer_id]], ())
                   for group in group_by_slot(self.gateway.writes, list(markers), keys.customer_live)]
        appended = [keys.event_appended(e.customer_id, e.event_id) for e in todo]
        try:
            self.gateway.call(lambda: run_scripts(self.gateway.writes, commits))
            self.gateway.call(lambda: run_scripts(self.gateway.writes, [(_GRACE, appended, (APPENDED_GRACE_S,))]))
        except Unavailable as exc:
            log.warning("could not commit the idempotency markers of events already in the stream "
                        "(a retry will not add them twice): %s", exc)
        return outcomes

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
