"""Every Redis read and write of the request path, behind the gateway's breaker and timeouts.

Key names come from ``redis_state.keys`` only; value formats from ``redis_state.codec`` and ``service.domain``.
A customer is read with one command (a Lua script returning the record of the served version, the live
overlay, the session and any extra keys of the customer's hash slot: one reply to parse instead of a
pipeline of three), and only when the worker's ``CustomerCache`` - kept exact by Redis' invalidation
messages - does not hold it. Events are written by ``event_writes.EventWriter``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redis_state import keys
from service.domain.customer import CustomerState
from service.domain.errors import Unavailable
from service.domain.events import Event
from service.infrastructure.customer_cache import CustomerCache
from service.infrastructure.customer_reads import (
    READ_CUSTOMER,
    customer_keys,
    decode_customer,
    published_customers,
    read_call,
)
from service.infrastructure.event_writes import EventWriter, IngestResult
from service.infrastructure.metrics import count_customer_read
from service.infrastructure.redis_client import RedisGateway, send_commands
from service.infrastructure.scripts import run_scripts
from settings import Settings

#: Customers per round trip when a worker reads them ahead of their requests (``Repository.read_ahead``).
READ_AHEAD_BATCH = 256
#: How long a shared answer is kept (seconds): a customer's next visit within it costs no scoring.
ANSWERS_TTL_S = 3600


class Repository:
    """Redis access for customers, events, item overrides and model versions."""

    def __init__(self, gateway: RedisGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        # Off in cluster mode: tracking is per node, so every worker would need a subscriber and tracked reads
        # on every primary, re-made on each failover, to stay exact (docs/SCALING.md says what that would cost).
        cache_size = 0 if settings.redis_cluster else settings.customer_cache_size
        self.customers = CustomerCache(gateway.background, cache_size)
        # What the cache stores is read through connections Redis tracks for it (same timeouts as their bases).
        cached = self.customers.enabled
        self._cached_reads = self.customers.tracked_client(gateway.reads) if cached else gateway.reads
        self._cached_loads = self.customers.tracked_client(gateway.loads) if cached else gateway.loads
        self.events = EventWriter(gateway, settings)

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
        client = self._cached_reads if cache is not None else self.gateway.reads
        reply = self.gateway.call(lambda: run_scripts(client, [(READ_CUSTOMER, script_keys, args)])[0])
        reader = cache.reader() if cache is not None else None
        state, digest = decode_customer(customer_id, reply, self.settings.session_max_items)
        if cache is not None and reply[0] is not None:
            # Only customers with a record: records are not tracked (immutable per version), but an absent
            # one can appear - the version re-published after a Redis restart while workers serve it.
            cache.put(customer_id, version, (state, digest), token, reader)
        return state, digest if fingerprinted else None, list(reply[3:])

    def read_ahead(self, version: str, limit: int) -> Iterator[tuple[str, CustomerState, bytes]]:
        """The customers published with ``version`` (at most ``limit``), read in pipelined batches before they
        ask for anything, each with its fingerprint, and kept in the customer cache while it has room (never
        pushing out a customer a request read). A batch is read after taking the cache's token, so a customer
        whose data changes meanwhile is not stored: the cache stays exact. Off the request path: its own
        client and timeouts, no breaker."""
        cache = self.customers if self.customers.enabled else None
        client = self._cached_loads
        for ids in published_customers(client, version, limit, READ_AHEAD_BATCH):
            token = cache.token() if cache is not None else 0
            replies = run_scripts(client, [read_call(version, customer_id) for customer_id in ids])
            reader = cache.reader() if cache is not None else None
            for customer_id, reply in zip(ids, replies, strict=True):
                if reply[0] is None:  # deleted since the scan (an old version pruned)
                    continue
                state, digest = decode_customer(customer_id, reply, self.settings.session_max_items)
                if cache is not None:
                    cache.put(customer_id, version, (state, digest), token, reader, evict=False)
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
        """Store a batch of events exactly once (``EventWriter.ingest``); this process's cached copies of the
        batch's customers are dropped whatever happened (a failed batch may have written part of it)."""
        try:
            return self.events.ingest(events)
        finally:
            if self.customers.enabled:
                self.customers.forget({event.customer_id for event in events})

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
        """Published versions (newest first) with their metrics, and the latest version-history lines (times
        in ISO 8601 UTC, as ``tailor models list`` shows them)."""
        from redis_state.versions import list_versions, read_history

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bytes | None]:
            client = self.gateway.writes
            return list_versions(client), read_history(client, history_limit), client.get(keys.ACTIVE_MODEL)

        versions, history, active = self.gateway.call(read)
        return {"active": active.decode() if active else None, "versions": versions, "history": history}

    def activate(self, version: str) -> None:
        """Make ``version`` the active one (``PublishError`` if it is not published)."""
        from redis_state.versions import activate_version

        self.gateway.call(lambda: activate_version(self.gateway.writes, version))

    def rollback(self) -> str:
        from redis_state.versions import rollback

        return self.gateway.call(lambda: rollback(self.gateway.writes))
