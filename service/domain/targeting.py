"""What promotions and message slots share: customer facts, decision ids and revisioned definitions.

Definitions (promotions, message slots) are small JSON documents that marketing tools change rarely and
every customer request reads, so each API process keeps a parsed copy and checks a revision counter in
Redis at most every ``poll_s`` seconds: a change reaches every process within a second without a Redis
read per request. Deleting a definition moves it to a "deleted" hash so that its report still has names
and variants until it is purged explicitly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import redis

from service.errors import InvalidInput, NotFound
from service.redis_client import send_commands

#: Promotion ids and slot names: they become part of Redis keys and decision ids, so no braces, colons,
#: glob characters or spaces.
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IDENTIFIER_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"

T = TypeVar("T")


@dataclass(frozen=True)
class CustomerFacts:
    """What targeting knows about a customer when a request arrives (assembled by the caller)."""

    customer_id: str
    known: bool  # has a purchase history (published with the model or from live purchase events)
    stage: str  # journey stage, e.g. "new" for a customer without purchases
    country: str | None = None
    orders: int = 0
    spend: float = 0.0
    embedding: np.ndarray | None = None  # the model's customer embedding (None without a history)
    top_category: str | None = None
    top_item: str | None = None  # title (or id) of the customer's most bought item


class Catalogue(Protocol):
    """The parts of a served model version that targeting reads (``service.store.LoadedModel`` has them)."""

    version: str
    item_ids: np.ndarray
    item_index: dict[str, int]
    item_meta: list[dict[str, Any]]
    category_codes: np.ndarray
    category_index: dict[str, int]
    popular: Any  # .items: item indices, most popular first


class DefinitionError(InvalidInput):
    """A promotion or slot definition breaks a rule.

    ``fields`` maps each dotted field path at fault to a message; ``details`` nests them the way the
    API reports marshmallow's errors (``{"json": {"cap": {"impressions": ["..."]}}}``).
    """

    def __init__(self, errors: Mapping[str, str], location: str = "json") -> None:
        fields = dict(errors)
        path, message = next(iter(fields.items()))
        nested: dict[str, Any] = {}
        for dotted, text in fields.items():
            node = nested
            *parents, leaf = dotted.split(".")
            for part in parents:
                child = node.setdefault(part, {})
                if isinstance(child, list):  # "cap" and "cap.days" both at fault
                    child = node[part] = {"_schema": child}
                node = child
            if isinstance(node.get(leaf), dict):
                node[leaf]["_schema"] = [text]
            else:
                node[leaf] = [text]
        super().__init__(f"invalid {path}: {message}", details={location: nested})
        self.fields = fields


def check_identifier(value: str, field: str) -> None:
    """Raise ``DefinitionError`` (location ``path``) unless ``value`` may be a promotion id or slot name."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise DefinitionError({field: IDENTIFIER_RULE}, location="path")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what definitions accept as numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def isoformat(moment: datetime) -> str:
    """UTC ISO 8601 with a ``Z``, as clients send and expect it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """ISO 8601 to an aware datetime; a time without an offset is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_time(value: Any) -> datetime | None:
    """A definition's time as stored (str) or loaded by its schema (datetime); None stays None."""
    if value is None:
        return None
    return value if isinstance(value, datetime) else parse_time(str(value))


def as_text(result: Any) -> str:
    """A Lua script's status reply as a string."""
    return result.decode() if isinstance(result, bytes) else str(result)


# -- decision ids --------------------------------------------------------------------------------------
# A decision id names what it decided about, so that feedback finds the decision's keys (and their hash
# slot) without a lookup: "<kind>-<16 hex>-<target>", kind "m" (message slot) or "p" (promotion).
DECISION_KINDS = {"m": "message", "p": "promotion"}
_DECISION = re.compile(r"^([mp])-([0-9a-f]{16})-([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")


def new_decision_id(kind: str, target: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}-{target}"


def parse_decision_id(decision_id: str) -> tuple[str, str] | None:
    """(kind, target) of a decision id made here, or None for anything else."""
    match = _DECISION.match(decision_id) if isinstance(decision_id, str) else None
    return (DECISION_KINDS[match.group(1)], match.group(3)) if match else None


# -- Lua scripts ---------------------------------------------------------------------------------------
class Lua:
    """A Lua script run by SHA, loaded on first use (and again after a Redis restart).

    Unlike redis-py's ``Script`` inside a pipeline, batching calls (``run_scripts``) costs no extra
    ``SCRIPT EXISTS`` round trip: a ``NOSCRIPT`` answer is rare, and only the calls that got one are
    repeated after loading.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


ScriptCall = tuple[Lua, Sequence[str], Sequence[Any]]


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall], then: Sequence[Sequence[Any]] = ()) -> list[Any]:
    """Run several scripts, then the plain commands ``then``, in one round trip (``send_commands``); their
    raw replies, in order.

    Scripts met with NOSCRIPT (a restarted or flushed Redis) are loaded and run again; any other error
    reply is raised.
    """
    replies = send_commands(client, [*(("EVALSHA", lua.sha, len(script_keys), *script_keys, *args)
                                       for lua, script_keys, args in calls), *then])
    for index, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError) and index < len(calls):
            lua, script_keys, args = calls[index]
            replies[index] = lua(client, script_keys, args)
        elif isinstance(reply, Exception):
            raise reply
    return replies


# -- revisioned definitions ----------------------------------------------------------------------------
_DELETE = Lua("""
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], raw)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
""")


class DefinitionStore(Generic[T]):
    """JSON definitions in a Redis hash plus a revision counter, with a per-process parsed cache.

    ``parse`` turns a stored JSON document into the domain object; it runs once per change and process.
    The three keys share one hash tag, so every change is a single MULTI or Lua script.
    """

    def __init__(self, defs_key: str, deleted_key: str, rev_key: str, parse: Callable[[dict[str, Any]], T],
                 *, poll_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 noun: str = "definition", id_field: str = "id") -> None:
        self.noun = noun
        self.id_field = id_field
        self.defs_key = defs_key
        self.deleted_key = deleted_key
        self.rev_key = rev_key
        self.parse = parse
        self.poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, T] = {}
        self._rev: bytes | None = None
        self._loaded = False
        self._checked = 0.0
        self._stale = True

    # writes (scope marketing) go straight to Redis and bump the revision
    def put(self, client: redis.Redis, def_id: str, document: Mapping[str, Any]) -> bool:
        """Store ``document`` under ``def_id``; True when it did not exist before (deleted counts as not)."""
        pipe = client.pipeline(transaction=True)
        pipe.hexists(self.defs_key, def_id)
        pipe.hset(self.defs_key, def_id, json.dumps(document, sort_keys=True))
        pipe.hdel(self.deleted_key, def_id)
        pipe.incr(self.rev_key)
        existed = pipe.execute()[0]
        self._stale = True
        return not existed

    def delete(self, client: redis.Redis, def_id: str) -> bool:
        """Move a definition to the deleted hash (reports keep working); False when it did not exist."""
        done = bool(_DELETE(client, [self.defs_key, self.deleted_key, self.rev_key], [def_id]))
        self._stale = True
        return done

    def forget(self, client: redis.Redis, def_id: str) -> bool:
        """Remove every trace of a definition (live or deleted); True when there was one."""
        pipe = client.pipeline(transaction=True)
        pipe.hdel(self.defs_key, def_id)
        pipe.hdel(self.deleted_key, def_id)
        pipe.incr(self.rev_key)
        live, deleted, _ = pipe.execute()
        self._stale = True
        return bool(live or deleted)

    def remove(self, client: redis.Redis, def_id: str, *, purge_pattern: str | None = None) -> None:
        """Delete (reports stay readable) or, given ``purge_pattern``, forget the definition and delete every
        key matching the pattern; ``NotFound`` when there was nothing to delete."""
        if purge_pattern is None:
            found = self.delete(client, def_id)
        else:
            found = self.forget(client, def_id)
            found = bool(purge_keys(client, purge_pattern)) or found
        if not found:
            raise self.not_found(def_id)

    def not_found(self, def_id: str) -> NotFound:
        return NotFound(f"{self.noun} {def_id!r} does not exist", details={self.id_field: def_id})

    # reads
    def get(self, client: redis.Redis, def_id: str, *, deleted_ok: bool = False) -> tuple[T, bool]:
        """(parsed definition, deleted) straight from Redis; ``NotFound`` when unknown (or deleted, unless
        ``deleted_ok``)."""
        doc, deleted = self.load(client, def_id)
        if doc is None or (deleted and not deleted_ok):
            raise self.not_found(def_id)
        return self.parse(doc), deleted

    def load(self, client: redis.Redis, def_id: str) -> tuple[dict[str, Any] | None, bool]:
        """(document, deleted) straight from Redis; (None, False) when unknown."""
        pipe = client.pipeline(transaction=False)
        pipe.hget(self.defs_key, def_id)
        pipe.hget(self.deleted_key, def_id)
        live, gone = pipe.execute()
        if live is not None:
            return json.loads(live), False
        if gone is not None:
            return json.loads(gone), True
        return None, False

    def load_all(self, client: redis.Redis) -> dict[str, dict[str, Any]]:
        """Every live definition straight from Redis."""
        return {k.decode(): json.loads(v) for k, v in client.hgetall(self.defs_key).items()}

    def cached(self, client: redis.Redis) -> dict[str, T]:
        """Parsed live definitions, at most ``poll_s`` seconds behind Redis (one GET per poll, not per call).

        While Redis cannot be reached, the last known definitions are served; before any were loaded the
        Redis error is raised.
        """
        now = self._clock()
        if not self._stale and now - self._checked < self.poll_s:
            return self._cache
        with self._lock:
            if not self._stale and now - self._checked < self.poll_s:
                return self._cache
            try:
                if self._stale or client.get(self.rev_key) != self._rev:
                    pipe = client.pipeline(transaction=True)
                    pipe.get(self.rev_key)
                    pipe.hgetall(self.defs_key)
                    rev, raw = pipe.execute()
                    self._cache = {k.decode(): self.parse(json.loads(v)) for k, v in raw.items()}
                    self._rev = rev
                    self._stale = False
                    self._loaded = True
            except (redis.RedisError, OSError):
                if not self._loaded:
                    raise
            self._checked = now
        return self._cache


def purge_keys(client: redis.Redis, pattern: str, batch: int = 1_000) -> int:
    """Delete every key matching ``pattern``: a SCAN of the whole keyspace, so for explicit purges only."""
    removed = 0
    found: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5_000):
        found.append(key)
        if len(found) >= batch:
            removed += _unlink(client, found)
            found = []
    return removed + _unlink(client, found)


def _unlink(client: redis.Redis, found: list[bytes]) -> int:
    if not found:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in found:
        pipe.unlink(key)
    return sum(pipe.execute())
