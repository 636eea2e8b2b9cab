"""The write path of ``POST /v1/events``: each event recorded in its customer's hashes and appended to the
events stream exactly once, however often a batch is retried and wherever Redis stops.

On a single Redis a batch is one script (``_INGEST``): a script runs atomically and replicates (and reaches
the AOF) as one MULTI/EXEC, so an event is either recorded, in the stream and marked, or not touched at all.
A Redis Cluster cannot run one script over the customers' slots and the stream's slot, so there a batch takes
four steps that each stay in one slot (``_ACCEPT`` per customer slot, ``_APPEND``, ``_COMMIT``, ``_GRACE``):
see ``EventWriter.ingest``. Both write the same idempotency markers, so an event left pending by the
four-step protocol is completed by either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis_state import keys
from scoring.history import SECONDS_PER_DAY
from service.domain.customer import live_value, session_value
from service.domain.errors import Unavailable
from service.domain.events import Event, received_at_text, stream_entry, unique_by_id
from service.infrastructure.feedback import apply_feedback, unattributed
from service.infrastructure.redis_client import RedisGateway, group_by_slot
from service.infrastructure.scripts import Lua, ScriptCall, run_scripts
from settings import Settings

log = logging.getLogger("tailor.repository")

#: Lua: an event's marker as its state (1 new, 2 pending: recorded, maybe not yet in the stream, 0 committed
#: or a timestamp written before these schemes: a duplicate); and recording a new event's write (ARGV
#: ``at``..``at + 2``: kind "l" | "s" | "-", field, value) in customer ``c``'s live hash (a purchase) or
#: session hash (a view / cart / click), noting in ``touched.live`` / ``touched.session`` which one changed.
_RECORD = """
local function state_of(seen)
  if not seen then return 1 elseif seen == 'p' then return 2 else return 0 end
end
local function record(touched, c, live_key, session_key, at)
  local kind = ARGV[at]
  if kind == 'l' then
    redis.call('HSET', live_key, ARGV[at + 1], ARGV[at + 2])
    touched.live[c] = true
  elseif kind == 's' then
    redis.call('HSET', session_key, ARGV[at + 1], ARGV[at + 2])
    touched.session[c] = true
  end
end
"""

#: Lua: give the hashes of a customer who got new events their TTLs, and cut a session that grew past
#: 2 x ``keep`` items to its ``keep`` newest (values ``[day, type]``; unreadable ones go first) here rather
#: than in two more round trips from the API.
_SETTLE = """
local function settle(live_key, session_key, live, session, live_ttl, session_ttl, keep)
  if live then redis.call('EXPIRE', live_key, live_ttl) end
  if session then
    redis.call('EXPIRE', session_key, session_ttl)
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
end
"""

#: A whole batch on a single Redis. KEYS: the stream, then per customer its live and session hashes, then
#: per event its idempotency marker (``keys.event_seen``). ARGV: stream MAXLEN (``~``), the marker's TTL,
#: the live and session TTLs, the session size ``keep``, the number of customers; then per event (batch
#: order) the number of its customer (1-based), its write (kind, field, value), the number of its stream
#: field/value strings and them.
#: An event without a marker is recorded, ``XADD``ed and marked committed ("c"), in that order; one found
#: pending ("p": left by the four-step protocol) is left to it. Returns per event 1 (added now), 2 (pending)
#: or 0 (a duplicate: committed, or a marker written before these schemes holding a timestamp).
_INGEST = Lua(_RECORD + _SETTLE + """
local out, at, customers = {}, 7, tonumber(ARGV[6])
local first = 2 + 2 * customers
local marks, touched = {}, {live = {}, session = {}}
for from = first, #KEYS, 1000 do
  local got = redis.call('MGET', unpack(KEYS, from, math.min(from + 999, #KEYS)))
  for j = 1, #got do marks[#marks + 1] = got[j] end
end
for i = first, #KEYS do
  local c, n = tonumber(ARGV[at]), tonumber(ARGV[at + 4])
  local state = state_of(marks[i - first + 1])
  if state == 1 then
    record(touched, c, KEYS[2 * c], KEYS[2 * c + 1], at + 1)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, at + 5, at + 4 + n))
    redis.call('SET', KEYS[i], 'c', 'EX', ARGV[2])
  end
  out[#out + 1] = state
  at = at + 5 + n
end
for c = 1, customers do
  settle(KEYS[2 * c], KEYS[2 * c + 1], touched.live[c], touched.session[c], ARGV[3], ARGV[4], tonumber(ARGV[5]))
end
return out
""")

#: Four-step protocol, step 1: the events of a batch for the customers of one hash slot. Per customer KEYS:
#: live hash, session hash, the events' markers; ARGV: the three TTLs, ``keep``, then per customer the number
#: of its events and per event its write (kind, field, value). An event without a marker gets a pending one
#: ("p", after recording it); it stays pending until ``_COMMIT``. Returns per customer, per event 1 (new),
#: 2 (pending: an earlier attempt stopped before its commit, so the event must be appended again -
#: idempotently) or 0 (committed: a duplicate). One call per slot, not per customer: on a batch of 100
#: customers the per-call cost (packing, the script's set-up, the reply) was most of the work.
_ACCEPT = Lua(_RECORD + _SETTLE + """
local out, k, at, keep = {}, 1, 5, tonumber(ARGV[4])
while k <= #KEYS do
  local live_key, session_key, n = KEYS[k], KEYS[k + 1], tonumber(ARGV[at])
  local touched = {live = {}, session = {}}
  at = at + 1
  for i = k + 2, k + 1 + n do
    local state = state_of(redis.call('GET', KEYS[i]))
    if state == 1 then
      record(touched, 1, live_key, session_key, at)
      redis.call('SET', KEYS[i], 'p', 'EX', ARGV[1])
    end
    out[#out + 1] = state
    at = at + 3
  end
  settle(live_key, session_key, touched.live[1], touched.session[1], ARGV[2], ARGV[3], keep)
  k = k + 2 + n
end
return out
""")

#: Step 2: append events to the stream in order, each at most once: KEYS[1] is the stream, KEYS[1 + i] the
#: append marker of event i (``keys.event_appended``, in the stream's slot); an event is ``XADD``ed only if
#: it has no marker, and the marker is set right after (``EX ARGV[2]``). ARGV per event: the number of
#: field/value strings, then them. Each marker is written *after* its entry (and ``_ACCEPT`` sets its marker
#: after recording the event): a script stopped by an error keeps the writes done before it, and must never
#: leave a marker without its data. Returns 1/0 per event (added now / was already in the stream).
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

#: Step 3 (after the feedback): the events of the customers of one slot are in the stream: their pending
#: markers become committed (TTL kept).
_COMMIT = Lua("""
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 'p' then redis.call('SET', KEYS[i], 'c', 'KEEPTTL') end
end
return #KEYS
""")

#: Step 4: committed events' append markers (all in the stream's slot) get the grace TTL ``ARGV[1]``.
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

#: Outcome of one event in ``_INGEST`` / ``_ACCEPT``.
ADDED, PENDING, DUPLICATE = 1, 2, 0


@dataclass(frozen=True)
class IngestResult:
    """Counts of one `POST /v1/events` batch."""

    received: int
    accepted: int
    duplicates: int
    unattributed: int = 0  # new clicks / conversions whose decision_id no decision takes


def _write_args(event: Event) -> tuple[str, str, str]:
    """An event's write into its customer's hashes: kind ("l" live | "s" session | "-" none), field, value."""
    if event.is_purchase:
        return "l", event.event_id, live_value(event.item_id or "", event.day, float(event.quantity or 1.0),
                                               event.price)
    if event.is_session:
        return "s", event.item_id or "", session_value(event.day, event.type)
    return "-", "", ""


def _stream_args(event: Event, received_at: str) -> list[Any]:
    """The number of an event's stream field/value strings, then them."""
    entry = stream_entry(event, received_at)
    return [len(entry), *entry]


class EventWriter:
    """Stores event batches exactly once: one script on a single Redis, four single-slot steps on a cluster."""

    def __init__(self, gateway: RedisGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        #: One script per batch where every key lives on one server (``_INGEST``), else the four steps.
        self.one_script = not settings.redis_cluster

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a batch so that each event reaches the stream exactly once; ``Unavailable`` if Redis fails
        before the batch's events are all in the stream (the client retries with the same ids).

        On a single Redis, ``_INGEST`` does it all at once. On a cluster (and for events an earlier attempt
        left pending):

        1. ``_ACCEPT``, one script per customer slot (one pipeline): new events get a *pending* marker and
           are recorded in the customer's hashes; events found pending are carried on; committed ones are
           duplicates.
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
        if self.one_script:
            states = self.gateway.call(lambda: self._ingest_at_once(unique, now))
            added = [event for event, state in zip(unique, states, strict=True) if state == ADDED]
            pending = [event for event, state in zip(unique, states, strict=True) if state == PENDING]
        else:  # every event accepted now is pending until its commit
            states = self.gateway.call(lambda: self._accept(unique))
            added = []
            pending = [event for event, state in zip(unique, states, strict=True) if state != DUPLICATE]
        accepted = len(added) + len(pending)
        if not accepted:
            return IngestResult(len(events), 0, len(events))
        if pending:
            if PENDING in states and time.monotonic() - started > PENDING_APPEND_MAX_AGE_S:
                raise Unavailable("the event batch took too long; send it again")
            added += self.gateway.call(lambda: self._append(pending, now))
        outcomes = self._finish(pending, added)
        return IngestResult(len(events), accepted, len(events) - accepted, unattributed(outcomes))

    def _static_args(self) -> list[Any]:
        """The markers', live and session TTLs and the session size ``keep``."""
        s = self.settings
        return [s.event_dedupe_s, int(s.live_ttl_days * SECONDS_PER_DAY), s.session_ttl_s, s.session_max_items]

    def _ingest_at_once(self, unique: list[Event], now: float) -> list[int]:
        """``_INGEST`` the batch (one round trip); per event ``ADDED`` / ``PENDING`` / ``DUPLICATE``."""
        customers: dict[str, int] = {}
        for event in unique:
            customers.setdefault(event.customer_id, len(customers) + 1)
        script_keys = [keys.EVENTS_STREAM]
        for customer_id in customers:
            script_keys += (keys.customer_live(customer_id), keys.customer_session(customer_id))
        args: list[Any] = [self.settings.events_maxlen, *self._static_args(), len(customers)]
        received_at = received_at_text(now)
        for event in unique:
            script_keys.append(keys.event_seen(event.customer_id, event.event_id))
            args += (customers[event.customer_id], *_write_args(event), *_stream_args(event, received_at))
        reply = run_scripts(self.gateway.writes, [(_INGEST, script_keys, args)])[0]
        return [int(state) for state in reply]

    def _accept(self, unique: list[Event]) -> list[int]:
        """Step 1: ``_ACCEPT`` once per slot of the batch's customers (one pipeline); per event ``ADDED``
        (here: newly pending) / ``PENDING`` / ``DUPLICATE``."""
        by_customer: dict[str, list[Event]] = {}
        for event in unique:
            by_customer.setdefault(event.customer_id, []).append(event)
        groups = group_by_slot(self.gateway.writes, list(by_customer), keys.customer_live)
        calls: list[ScriptCall] = []
        for group in groups:
            script_keys: list[str] = []
            args: list[Any] = self._static_args()
            for customer_id in group:
                customer_events = by_customer[customer_id]
                script_keys += (keys.customer_live(customer_id), keys.customer_session(customer_id),
                                *(keys.event_seen(customer_id, event.event_id) for event in customer_events))
                args.append(len(customer_events))
                for event in customer_events:
                    args += _write_args(event)
            calls.append((_ACCEPT, script_keys, args))
        replies = run_scripts(self.gateway.writes, calls)
        states: dict[tuple[str, str], int] = {}
        for group, reply in zip(groups, replies, strict=True):
            marks = iter(reply)
            for customer_id in group:
                for event in by_customer[customer_id]:
                    states[(customer_id, event.event_id)] = int(next(marks))
        return [states[(event.customer_id, event.event_id)] for event in unique]

    def _append(self, todo: list[Event], now: float) -> list[Event]:
        """Step 2: ``_APPEND`` the events (batch order); the events added to the stream by this call."""
        args: list[Any] = [self.settings.events_maxlen, self.settings.event_dedupe_s + APPENDED_GRACE_S]
        received_at = received_at_text(now)
        for event in todo:
            args += _stream_args(event, received_at)
        script_keys = [keys.EVENTS_STREAM, *(keys.event_appended(e.customer_id, e.event_id) for e in todo)]
        reply = run_scripts(self.gateway.writes, [(_APPEND, script_keys, args)])[0]
        return [event for event, ok in zip(todo, reply, strict=True) if ok]

    def _finish(self, pending: list[Event], added: list[Event]) -> list[str]:
        """Steps 3 and 4 (the events are in the stream already): best effort, a failure is only logged.
        Returns the feedback outcomes of the events added (``apply_feedback``)."""
        outcomes: list[str] = []
        try:
            if added:
                outcomes = self.gateway.call(lambda: apply_feedback(self.gateway.writes, added))
        except Unavailable as exc:
            log.warning("could not apply the feedback of an event batch: %s", exc)
        if not pending:
            return outcomes
        markers: dict[str, list[str]] = {}
        for event in pending:
            markers.setdefault(event.customer_id, []).append(keys.event_seen(event.customer_id, event.event_id))
        commits = [(_COMMIT, [marker for customer_id in group for marker in markers[customer_id]], ())
                   for group in group_by_slot(self.gateway.writes, list(markers), keys.customer_live)]
        appended = [keys.event_appended(e.customer_id, e.event_id) for e in pending]
        try:
            self.gateway.call(lambda: run_scripts(self.gateway.writes, commits))
            self.gateway.call(lambda: run_scripts(self.gateway.writes, [(_GRACE, appended, (APPENDED_GRACE_S,))]))
        except Unavailable as exc:
            log.warning("could not commit the idempotency markers of events already in the stream "
                        "(a retry will not add them twice): %s", exc)
        return outcomes
