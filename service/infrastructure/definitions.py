"""Revisioned definitions (promotions, message slots) in Redis, with a parsed copy per process.

Definitions are small JSON documents that marketing tools change rarely and every customer request reads,
so each API process keeps a parsed copy and checks a revision counter in Redis at most every ``poll_s``
seconds: a change reaches every process within a second without a Redis read per request. Deleting a
definition moves it to a "deleted" hash so that its report still has names and variants until it is
purged explicitly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import redis

from service.domain.errors import NotFound
from service.infrastructure.scripts import Lua

T = TypeVar("T")


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
