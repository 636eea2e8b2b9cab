"""Finished answers memoised per process: a recommendation is a pure function of what it was computed from.

A customer's recommendations depend only on the served ``ServingState`` (model version + item overrides),
the request's arguments and the customer's three Redis values (published record, live purchases, session);
"now" does too, but with ``TAILOR_CLOCK=data`` it is derived from those same values. So the request path
still reads the customer on every request - from Redis, or from the worker's customer cache that Redis
keeps exact (``service.infrastructure.customer_cache``) - and an event changes the very next answer; only when the
fingerprint of what it read is the one a remembered answer was computed from are scoring, ranking and
reasons skipped. Nothing needs invalidating: a purchase changes the fingerprint; a model swap or an item
override is a new state, which empties the memo. Similar items and baskets depend on the state and the
arguments alone.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import orjson

from service.infrastructure.model_store import ServingState

#: An answer as the JSON document sent to the client: one immutable object per remembered answer (a dict of
#: item dicts would be ~40 objects for the garbage collector to walk, churned by every new basket), and no
#: serialisation on a hit.
Answer = bytes


def encode(answer: dict[str, Any]) -> Answer:
    """The JSON document of an answer (orjson: several times faster than the stdlib on these payloads)."""
    return orjson.dumps(answer)


def fingerprint(blob: bytes | None, *hashes: Mapping[bytes, bytes]) -> bytes:
    """A 128-bit digest of a customer's raw Redis values (record bytes + hash fields), order-independent."""
    digest = hashlib.blake2b(blob or b"", digest_size=16)
    for fields in hashes:
        digest.update(b"\x00" + len(fields).to_bytes(4, "little"))
        for name, value in sorted(fields.items()):
            digest.update(len(name).to_bytes(4, "little") + name + len(value).to_bytes(4, "little") + value)
    return digest.digest()


class AnswerMemo:
    """An LRU map (key -> (fingerprint, answer)) tied to one serving state; thread-safe.

    Answers are immutable JSON bytes shared between requests. The state is held by weak reference: a
    swapped-out model is not kept alive by the memo.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._state: weakref.ref[ServingState] | None = None
        self._entries: OrderedDict[Hashable, tuple[bytes, Answer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, state: ServingState, key: Hashable, fingerprint: bytes = b"") -> Answer | None:
        """The answer remembered for ``key`` under ``state`` if it was computed from ``fingerprint``."""
        if self.max_entries <= 0:
            return None
        with self._lock:
            if self._state is None or self._state() is not state:
                return None
            found = self._entries.get(key)
            if found is None or found[0] != fingerprint:
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, state: ServingState, key: Hashable, answer: Answer, fingerprint: bytes = b"") -> None:
        """Remember ``answer``; a state other than the remembered one replaces all entries."""
        if self.max_entries <= 0:
            return
        with self._lock:
            if self._state is None or self._state() is not state:
                self._entries.clear()
                self._state = weakref.ref(state)
            self._entries[key] = (fingerprint, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
