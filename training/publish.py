"""Publishing model directories to Redis, and managing the published versions.

A version is uploaded under its own keys (pipelined, in batches) and its manifest is written last, as the
marker that the upload is whole; activation is then one atomic ``SET`` of the active pointer. A publish that
fails half-way removes what it wrote and never touches the active version, so API processes keep serving.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import redis
from tqdm import tqdm

from service import keys
from service.codec import CustomerRecord, array_to_bytes, pack_customer
from service.config import DEFAULT_REDIS_URL, mask_url
from training.artifact import Artifact, ArtifactError, read_artifact

PIPELINE_BATCH = 2_000


class PublishError(Exception):
    """Publishing or version management failed; the active model is unchanged."""


def connect(url: str | None = None) -> redis.Redis:
    """A client for ``url`` (or $REDIS_URL), checked with a PING so errors surface here, named."""
    url = url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise PublishError(f"cannot reach Redis at {mask_url(url)}: {exc}") from None
    return client


def customer_records(artifact: Artifact) -> Iterator[tuple[str, bytes]]:
    """(customer id, packed record) for every customer of the artifact."""
    h = artifact.history
    indptr, indices = h.orders.indptr, h.orders.indices
    c = artifact.customers
    for row, customer_id in enumerate(artifact.customer_ids):
        lo, hi = indptr[row], indptr[row + 1]
        yield str(customer_id), pack_customer(CustomerRecord(
            items=indices[lo:hi], orders=h.orders.data[lo:hi], quantity=h.quantity.data[lo:hi],
            last_day=h.last_day.data[lo:hi], spend=float(c.spend[row]), first_day=float(c.first_day[row]),
            last_purchase_day=float(c.last_day[row]), order_count=int(c.orders[row]), country=int(c.country[row]),
        ))


def model_blobs(artifact: Artifact) -> dict[str, bytes]:
    """Every non-customer piece of a version, as named blobs."""
    blobs = {f"model/{name}": array_to_bytes(arr) for name, arr in artifact.model.arrays().items()}
    blobs["item_ids"] = array_to_bytes(np.asarray(artifact.item_ids, dtype=str))
    blobs["item_embeddings"] = array_to_bytes(artifact.item_embeddings.astype(np.float32))
    blobs["items.json"] = json.dumps(artifact.items).encode()
    blobs["popular.json"] = json.dumps(artifact.popular).encode()
    blobs["countries.json"] = json.dumps(artifact.customers.countries).encode()
    return blobs


def default_keep() -> int:
    """``TAILOR_KEEP_VERSIONS`` (see ``service.config``); a bad value is a ``PublishError`` before any upload."""
    from service.config import ConfigError, setting_value

    try:
        return int(setting_value("TAILOR_KEEP_VERSIONS"))
    except ConfigError as exc:
        raise PublishError(str(exc)) from None


def publish_model(client: redis.Redis, model_dir: str | Path, *, activate: bool = True, keep: int | None = None,
                  progress: bool = False) -> str:
    """Upload ``model_dir`` as a new version, then (optionally) activate it; return the version id."""
    keep = keep if keep is not None else default_keep()
    artifact = read_artifact(model_dir, verify=True)
    version = artifact.version
    try:
        if client.exists(keys.model_manifest(version)):
            raise PublishError(f"version {version} is already published; use `tailor models activate {version}`")
        _upload(client, artifact, progress)
        if activate:
            activate_version(client, version, action="publish")
        prune(client, keep)
    except redis.RedisError as exc:
        _remove_version_keys(client, version, quiet=True)
        raise PublishError(f"publishing {version} failed, active model unchanged: {exc}") from None
    return version


def _upload(client: redis.Redis, artifact: Artifact, progress: bool) -> None:
    version = artifact.version
    try:
        blobs = model_blobs(artifact)
        pipe = client.pipeline(transaction=False)
        for name, blob in blobs.items():
            pipe.set(keys.model_blob(version, name), blob)
        pipe.execute()
        bar = tqdm(total=len(artifact.customer_ids), unit="customer", desc="publish", disable=not progress,
                   file=sys.stderr)
        for count, (customer_id, blob) in enumerate(customer_records(artifact), start=1):
            pipe.set(keys.customer_history(version, customer_id), blob)
            if count % PIPELINE_BATCH == 0:
                pipe.execute()
                bar.update(PIPELINE_BATCH)
        pipe.execute()
        bar.update(bar.total - bar.n)
        bar.close()
        manifest = dict(artifact.manifest, published_at=time.time(), blobs=sorted(blobs))
        client.set(keys.model_manifest(version), json.dumps(manifest))
        client.zadd(keys.MODEL_VERSIONS, {version: manifest["published_at"]})
    except BaseException:
        _remove_version_keys(client, version, quiet=True)
        raise


def log_event(client: redis.Redis, action: str, version: str, **extra: Any) -> None:
    """Append to the version history that `GET /v1/models` and `tailor models list` show."""
    entry = {"at": time.time(), "action": action, "version": version, **extra}
    client.lpush(keys.MODEL_HISTORY, json.dumps(entry))
    client.ltrim(keys.MODEL_HISTORY, 0, 999)


def activate_version(client: redis.Redis, version: str, action: str = "activate") -> None:
    """Make ``version`` the served one (one atomic SET) and log it; ``action`` names why in the history."""
    if not client.exists(keys.model_manifest(version)):
        raise PublishError(f"version {version} is not published (see `tailor models list`)")
    previous = client.get(keys.ACTIVE_MODEL)
    client.set(keys.ACTIVE_MODEL, version)
    log_event(client, action, version, previous=previous.decode() if previous else None)


def rollback(client: redis.Redis) -> str:
    """Re-activate the version that was active before the current one (and still exists)."""
    active = _active(client)
    for raw in client.lrange(keys.MODEL_HISTORY, 0, -1):
        entry = json.loads(raw)
        if entry.get("action") in {"publish", "activate", "rollback"}:
            previous = entry.get("previous")
            if entry.get("version") == active and previous and client.exists(keys.model_manifest(previous)):
                activate_version(client, previous, action="rollback")
                return previous
            if entry.get("version") == active:
                break
    raise PublishError("no earlier version to roll back to")


def _active(client: redis.Redis) -> str | None:
    raw = client.get(keys.ACTIVE_MODEL)
    return raw.decode() if raw else None


def delete_version(client: redis.Redis, version: str) -> None:
    if _active(client) == version:
        raise PublishError(f"version {version} is active; activate another one before deleting it")
    if not client.exists(keys.model_manifest(version)) and client.zscore(keys.MODEL_VERSIONS, version) is None:
        raise PublishError(f"version {version} is not published")
    _remove_version_keys(client, version)
    log_event(client, "delete", version)


def _remove_version_keys(client: redis.Redis, version: str, quiet: bool = False) -> None:
    """Delete a version: its manifest and list entry first (it disappears at once), then its data."""
    try:
        client.zrem(keys.MODEL_VERSIONS, version)
        client.delete(keys.model_manifest(version))
        for pattern in (keys.model_blob_pattern(version), keys.customer_history_pattern(version)):
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
    active = _active(client)
    versions = [v.decode() for v in client.zrange(keys.MODEL_VERSIONS, 0, -1)]
    removed = []
    for version in versions[: max(0, len(versions) - max(keep, 1))]:
        if version != active:
            _remove_version_keys(client, version)
            log_event(client, "prune", version)
            removed.append(version)
    return removed


def list_versions(client: redis.Redis) -> list[dict[str, Any]]:
    """Published versions, newest first, with their headline metrics."""
    active = _active(client)
    out = []
    for raw_version, published_at in client.zrevrange(keys.MODEL_VERSIONS, 0, -1, withscores=True):
        version = raw_version.decode()
        raw = client.get(keys.model_manifest(version))
        if raw is None:
            continue
        manifest = json.loads(raw)
        out.append({
            "version": version, "active": version == active, "published_at": published_at,
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
    if not versions:
        return "no published versions"
    lines = [f"{'':2}{'VERSION':<38}{'ALGORITHM':<12}{'CUSTOMERS':>10}{'ITEMS':>8}  METRICS"]
    for v in versions:
        counts = v.get("counts") or {}
        lines.append(f"{'*' if v['active'] else ' ':2}{v['version']:<38}{v['algorithm'] or '-':<12}"
                     f"{counts.get('customers', 0):>10,}{counts.get('items', 0):>8,}  {headline(v['evaluation'])}")
    return "\n".join(lines)


__all__ = ["ArtifactError", "PublishError", "activate_version", "connect", "delete_version", "list_versions",
           "publish_model", "rollback"]
