"""The published model versions in Redis: connect, list, activate, roll back, delete and prune.

Both halves manage versions (``tailor publish`` / ``tailor models`` and the service's ``/v1/models``), so
this lives below both. Activation is one atomic ``SET`` of the active pointer; every change is logged in the
version history that ``GET /v1/models`` and ``tailor models list`` show.

Changes are serialised by one lock key (``model_changes``): each reads what it depends on (the active
version, the activation history, whether a version exists) and writes in the same critical section, so two
rollbacks return to two different versions, and a delete or a prune can never remove a version that another
process activated meanwhile. The lock expires on its own if its holder dies.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import LockError

from redis_state import keys
from redis_state.clients import CLUSTER_ERRORS, cluster_mode, make_redis
from settings import DEFAULT_REDIS_URL, ConfigError, mask_url


class PublishError(Exception):
    """Publishing or version management failed; the active model is unchanged unless the message says so."""


class ModelChangeBusy(PublishError):
    """Another model change held the lock for longer than ``LOCK_WAIT_S``; nothing was changed."""


def connect(url: str | None = None, *, cluster: bool | None = None) -> redis.Redis:
    """A client for ``url`` (or $REDIS_URL), checked with a PING so errors surface here, named.

    ``cluster`` (default: ``TAILOR_REDIS_CLUSTER``) makes it a ``RedisCluster`` client that ``url`` bootstraps.
    """
    url = url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        cluster = cluster_mode() if cluster is None else cluster
    except ConfigError as exc:
        raise PublishError(str(exc)) from None
    try:
        client = make_redis(url, cluster=cluster, socket_timeout=30, socket_connect_timeout=5, retries=3)
        client.ping()
    except (redis.RedisError, ValueError, ConfigError, *CLUSTER_ERRORS) as exc:
        kind = "Redis Cluster" if cluster else "Redis"
        raise PublishError(f"cannot reach {kind} at {mask_url(url)}: {exc}") from None
    return client


#: Seconds after which a lock whose holder died frees itself; every critical section is a few commands.
LOCK_TIMEOUT_S = 30.0
#: Seconds a change waits for another to finish before it gives up.
LOCK_WAIT_S = 10.0


@contextmanager
def model_changes(client: redis.Redis) -> Iterator[None]:
    """Hold the model-change lock (redis-py's ``Lock``: a token-checked ``SET NX PX``, one key, cluster-safe)."""
    lock = client.lock(keys.MODEL_LOCK, timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_WAIT_S)
    if not lock.acquire():
        raise ModelChangeBusy("another model change (publish, activate, rollback, delete) is still running; "
                           "try again when it has finished")
    try:
        yield
    finally:
        with suppress(LockError):  # held past its timeout and taken over: the change itself is complete
            lock.release()


def log_event(client: redis.Redis, action: str, version: str, **extra: Any) -> None:
    """Append to the version history that `GET /v1/models` and `tailor models list` show."""
    entry = {"at": time.time(), "action": action, "version": version, **extra}
    client.lpush(keys.MODEL_HISTORY, json.dumps(entry))
    client.ltrim(keys.MODEL_HISTORY, 0, 999)


def activate_version(client: redis.Redis, version: str, action: str = "activate") -> None:
    """Make ``version`` the served one (one atomic SET) and log it; ``action`` names why in the history.

    The history line records the version that was active before (``previous``): that is what pushes it on
    the activation stack that ``rollback`` pops. Re-activating the active version pushes nothing.
    """
    with model_changes(client):
        _activate(client, version, action)


def _activate(client: redis.Redis, version: str, action: str) -> None:
    """``activate_version`` inside a held ``model_changes``."""
    if not client.exists(keys.model_manifest(version)):
        raise PublishError(f"version {version} is not published (see `tailor models list`)")
    previous = client.get(keys.ACTIVE_MODEL)
    client.set(keys.ACTIVE_MODEL, version)
    log_event(client, action, version, previous=previous.decode() if previous else None)


#: History actions that made a version active (and pushed the previously active one on the stack).
ACTIVATIONS = frozenset({"publish", "activate"})


def activation_stack(client: redis.Redis) -> list[str]:
    """The versions a rollback may return to, the most recent last, replayed from the version history.

    Every activation (``publish``, ``activate``) pushes the version that was active before it, unless it
    re-activated the active version; every ``rollback`` to V pops the stack down to and including V (the
    entries above V were skipped: deleted versions). The history is the one source of truth, so the
    ``tailor models rollback`` command and ``POST /v1/models/rollback`` walk the same stack.
    """
    stack: list[str] = []
    for raw in reversed(client.lrange(keys.MODEL_HISTORY, 0, -1)):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        action, version, previous = entry.get("action"), entry.get("version"), entry.get("previous")
        if action in ACTIVATIONS:
            if previous and previous != version:
                stack.append(previous)
        elif action == "rollback":
            while stack and stack.pop() != version:
                pass
    return stack


def rollback(client: redis.Redis) -> str:
    """Re-activate the version that was active before the current one, walking the activation history as a
    stack: after activating A, B, C, rollbacks return to B, then A. Versions deleted meanwhile are skipped."""
    with model_changes(client):
        active = active_version(client)
        stack = activation_stack(client)
        while stack:
            candidate = stack.pop()
            if candidate != active and client.exists(keys.model_manifest(candidate)):
                _activate(client, candidate, action="rollback")
                return candidate
    raise PublishError("no earlier version to roll back to")


def active_version(client: redis.Redis) -> str | None:
    raw = client.get(keys.ACTIVE_MODEL)
    return raw.decode() if raw else None


def delete_version(client: redis.Redis, version: str) -> None:
    with model_changes(client):
        if active_version(client) == version:
            raise PublishError(f"version {version} is active; activate another one before deleting it")
        if not client.exists(keys.model_manifest(version)) and client.zscore(keys.MODEL_VERSIONS, version) is None:
            raise PublishError(f"version {version} is not published")
        _retire(client, version)
        log_event(client, "delete", version)
    remove_version_keys(client, version)


def remove_unless_active(client: redis.Redis, version: str) -> bool:
    """Remove a version that a failed publish left behind, unless it became the active one (then it serves
    and stays); best effort, never raises. True when it was removed."""
    try:
        with model_changes(client):
            if active_version(client) == version:
                return False
            _retire(client, version)
    except (redis.RedisError, PublishError):
        return False
    remove_version_keys(client, version, quiet=True)
    return True


def _retire(client: redis.Redis, version: str) -> None:
    """Take a version out of the list and drop its manifest: from then on it cannot be activated (its data
    is removed after, outside the lock)."""
    client.zrem(keys.MODEL_VERSIONS, version)
    client.delete(keys.model_manifest(version))


def remove_version_keys(client: redis.Redis, version: str, quiet: bool = False) -> None:
    """Delete a version: its manifest and list entry first (it disappears at once), then its data.

    Callers retire it under ``model_changes`` first (``delete_version``, ``prune``), so it is never the active
    one. A cluster client's ``scan_iter`` walks every primary (customer records are spread over all slots) and
    its pipeline sends each node the UNLINKs of the keys it owns."""
    try:
        _retire(client, version)
        for pattern in (keys.model_blob_pattern(version), keys.customer_history_pattern(version),
                        keys.customer_answers_pattern(version)):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=5_000):
                batch.append(key)
                if len(batch) >= 1_000:
                    _unlink(client, batch)
                    batch = []
            _unlink(client, batch)
    except redis.RedisError:
        if not quiet:
            raise


def _unlink(client: redis.Redis, batch: list[bytes]) -> None:
    """One UNLINK per key, pipelined: keys of different customers live in different cluster slots."""
    if batch:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.unlink(key)
        pipe.execute()


def prune(client: redis.Redis, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest versions; never the active one."""
    removed = []
    with model_changes(client):
        active = active_version(client)
        versions = [v.decode() for v in client.zrange(keys.MODEL_VERSIONS, 0, -1)]
        for version in versions[: max(0, len(versions) - max(keep, 1))]:
            if version != active:
                _retire(client, version)
                log_event(client, "prune", version)
                removed.append(version)
    for version in removed:
        remove_version_keys(client, version)
    return removed


def iso_time(value: Any) -> Any:
    """Epoch seconds (how Redis and manifests store publish and history times) -> ISO 8601 UTC to the second,
    the format of a manifest's ``created_at`` ("2026-12-03T08:13:21Z"); anything else (None, text) unchanged.

    Here, below both halves, so that ``tailor models list`` and ``/v1/models`` show the same times."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        moment = datetime.fromtimestamp(value, UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")
    return value


def read_history(client: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """The latest ``limit`` lines of the version history, newest first, their ``at`` in ISO 8601 UTC
    (unreadable lines are skipped)."""
    lines = []
    for raw in client.lrange(keys.MODEL_HISTORY, 0, limit - 1):
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append({**line, "at": iso_time(line.get("at"))} if "at" in line else line)
    return lines


def list_versions(client: redis.Redis) -> list[dict[str, Any]]:
    """Published versions, newest first, with their headline metrics; ``published_at`` in ISO 8601 UTC."""
    active = active_version(client)
    out = []
    for raw_version, published_at in client.zrevrange(keys.MODEL_VERSIONS, 0, -1, withscores=True):
        version = raw_version.decode()
        raw = client.get(keys.model_manifest(version))
        if raw is None:
            continue
        manifest = json.loads(raw)
        out.append({
            "version": version, "active": version == active, "published_at": iso_time(published_at),
            "created_at": manifest.get("created_at"), "algorithm": manifest.get("algorithm"),
            "params": manifest.get("params"), "counts": manifest.get("counts"),
            "evaluation": manifest.get("evaluation"), "data": {
                k: manifest.get("data", {}).get(k) for k in ("source", "fingerprint_sha256", "until",
                                                               "last_timestamp")},
        })
    return out


def headline(evaluation: dict[str, Any] | None) -> str:
    """'overall NDCG@10 0.371 / discovery 0.104' or '-' when not evaluated."""
    if not evaluation:
        return "-"
    try:
        model = evaluation["model"]
        return (f"NDCG@{evaluation['k']} overall {model['overall']['ndcg']:.3f} / "
                f"discovery {model['discovery']['ndcg']:.3f}")
    except (KeyError, TypeError):
        return "-"


def format_versions(versions: list[dict[str, Any]]) -> str:
    """``tailor models list``'s table: the active version starred, publish times as ``list_versions`` gives them."""
    if not versions:
        return "no published versions"
    lines = [f"{'':2}{'VERSION':<38}{'PUBLISHED':<22}{'ALGORITHM':<12}{'CUSTOMERS':>10}{'ITEMS':>8}  METRICS"]
    for v in versions:
        counts = v.get("counts") or {}
        lines.append(f"{'*' if v['active'] else ' ':2}{v['version']:<38}{v.get('published_at') or '-':<22}"
                     f"{v['algorithm'] or '-':<12}"
                     f"{counts.get('customers', 0):>10,}{counts.get('items', 0):>8,}  {headline(v['evaluation'])}")
    return "\n".join(lines)
