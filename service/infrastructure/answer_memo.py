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

``SharedAnswers`` extends the memo across processes: a customer's answer is stored in Redis next to the
customer (``keys.customer_answers``) with the fingerprint it was computed from, and read back in the same
round trip as the customer, so a customer scored by one worker costs no scoring in the others (nor after a
restart). The field names the serving state exactly - version, inactive items, the settings and the code
that shape an answer - so a process never takes an answer computed under anything else.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from service.infrastructure.model_store import ServingState
from settings import Settings

#: An answer as the JSON document sent to the client: one immutable object per remembered answer (a dict of
#: item dicts would be ~40 objects for the garbage collector to walk, churned by every new basket), and no
#: serialisation on a hit.
Answer = bytes


def encode(answer: dict[str, Any]) -> Answer:
    """The JSON document of an answer (orjson: several times faster than the stdlib on these payloads)."""
    return orjson.dumps(answer)


#: Length of a ``fingerprint``; a shared answer is stored as fingerprint + JSON.
FINGERPRINT_BYTES = 16


def fingerprint(blob: bytes | None, *hashes: Mapping[bytes, bytes]) -> bytes:
    """A 128-bit digest of a customer's raw Redis values (record bytes + hash fields), order-independent."""
    digest = hashlib.blake2b(blob or b"", digest_size=16)
    for fields in hashes:
        digest.update(b"\x00" + len(fields).to_bytes(4, "little"))
        for name, value in sorted(fields.items()):
            digest.update(len(name).to_bytes(4, "little") + name + len(value).to_bytes(4, "little") + value)
    return digest.digest()


Value = TypeVar("Value")


class AnswerMemo(Generic[Value]):
    """An LRU map (key -> (fingerprint, value)) tied to one serving state; thread-safe.

    Values are immutable and shared between requests: answers as JSON bytes, or what a model derived from
    a customer's data (``Engine.rank_items``). The state is held by weak reference: a swapped-out model
    is not kept alive by the memo.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._state: weakref.ref[ServingState] | None = None
        self._entries: OrderedDict[Hashable, tuple[bytes, Value]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, state: ServingState, key: Hashable, fingerprint: bytes = b"") -> Value | None:
        """The value remembered for ``key`` under ``state`` if it was computed from ``fingerprint``."""
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

    def put(self, state: ServingState, key: Hashable, answer: Value, fingerprint: bytes = b"", *,
            evict: bool = True) -> None:
        """Remember ``answer``; a state other than the remembered one replaces all entries. With
        ``evict=False`` only while there is room (values computed ahead never push out requested ones)."""
        if self.max_entries <= 0:
            return
        with self._lock:
            if self._state is None or self._state() is not state:
                self._entries.clear()
                self._state = weakref.ref(state)
            elif not evict and len(self._entries) >= self.max_entries and key not in self._entries:
                return
            self._entries[key] = (fingerprint, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class SharedAnswers:
    """Names of shared answers (``Repository.customer_read(answer_field=...)``): a digest of everything an
    answer depends on besides the customer's data, whose fingerprint is stored with the answer."""

    #: The code that turns a customer into an answer: any change to it (a deploy) names new fields.
    CODE = ("scoring", "service/domain", "service/usecases/engine.py", "service/infrastructure/model_store.py",
            "redis_state/codec.py")

    def __init__(self, settings: Settings) -> None:
        root = Path(__file__).resolve().parents[2]
        digest = hashlib.blake2b(digest_size=16)
        for name in self.CODE:
            path = root / name
            for source in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []:
                digest.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes())
        shaping = (settings.clock, settings.session_max_items, settings.lapsed_days, settings.repeat_min_orders)
        digest.update(repr(shaping).encode())
        self._base = digest.digest()
        self._state: tuple[weakref.ref[ServingState], bytes] | None = None  # one attribute: swapped atomically

    def field(self, state: ServingState, key: Hashable) -> bytes:
        """The field of ``key``'s answer under ``state`` (the same in every process serving that state)."""
        known = self._state
        if known is None or known[0]() is not state:
            digest = hashlib.blake2b(self._base, digest_size=16)
            digest.update(state.model.version.encode() + b"\0" + state.inactive.astype("<i8").tobytes())
            known = self._state = (weakref.ref(state), digest.digest())
        return hashlib.blake2b(known[1] + repr(key).encode(), digest_size=16).digest()
