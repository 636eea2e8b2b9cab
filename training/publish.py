"""Publishing a model directory to Redis as a new version (managing versions: ``redis_state.versions``).

A version is uploaded under its own keys (pipelined, in batches) and its manifest is written last, as the
marker that the upload is whole; activation is then one atomic ``SET`` of the active pointer. A publish that
fails half-way removes what it wrote and never touches the active version, so API processes keep serving.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import redis
from tqdm import tqdm

from redis_state import keys
from redis_state.codec import CustomerRecord, array_to_bytes, pack_customer
from redis_state.versions import PublishError, activate_version, prune, remove_unless_active
from scoring.artifact import Artifact, latest_first, read_artifact, segment_matrix
from settings import ConfigError, setting_value

PIPELINE_BATCH = 2_000


def customer_records(artifact: Artifact) -> Iterator[tuple[str, bytes]]:
    """(customer id, packed record) for every customer of the artifact. The first purchase day per item is
    carried when the artifact has it; one written before it was kept publishes records without it, as then."""
    segment = segment_matrix(artifact.customers).tolist()
    for row, customer_id in enumerate(artifact.customer_ids):
        yield str(customer_id), pack_customer(customer_record(artifact, row, tuple(segment[row])))


def customer_record(artifact: Artifact, row: int, segments: tuple[int, ...] | None = None) -> CustomerRecord:
    """The record the service reads for the customer at ``row`` (``segments``: that row of
    ``segment_matrix``, which callers packing every customer compute once)."""
    h = artifact.history
    lo, hi = h.orders.indptr[row], h.orders.indptr[row + 1]
    c = artifact.customers
    if segments is None:
        segments = tuple(segment_matrix(c)[row].tolist())
    return CustomerRecord(
        items=h.orders.indices[lo:hi], orders=h.orders.data[lo:hi], quantity=h.quantity.data[lo:hi],
        last_day=h.last_day.data[lo:hi], spend=float(c.spend[row]), first_day=float(c.first_day[row]),
        last_purchase_day=float(c.last_day[row]), order_count=int(c.orders[row]), country=int(c.country[row]),
        segments=segments, item_first_day=h.first_day.data[lo:hi] if h.first_day is not None else None)


def model_blobs(artifact: Artifact) -> dict[str, bytes]:
    """Every non-customer piece of a version, as named blobs."""
    blobs = {f"model/{name}": array_to_bytes(arr) for name, arr in artifact.model.arrays().items()}
    blobs["item_ids"] = array_to_bytes(np.asarray(artifact.item_ids, dtype=str))
    blobs["item_embeddings"] = array_to_bytes(artifact.item_embeddings.astype(np.float32))
    blobs["items.json"] = json.dumps(artifact.items).encode()
    blobs["popular.json"] = json.dumps(artifact.popular).encode()
    blobs["countries.json"] = json.dumps(artifact.customers.countries).encode()
    blobs["segments.json"] = json.dumps(artifact.customers.segments).encode()
    h = artifact.history.last_day
    blobs[keys.CUSTOMERS_LATEST_FIRST] = array_to_bytes(latest_first(np.asarray(artifact.customer_ids, dtype=str),
                                                                h.indptr, h.data))
    return blobs


def default_keep() -> int:
    """``TAILOR_KEEP_VERSIONS`` (see ``settings``); a bad value is a ``PublishError`` before any upload."""
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
        if remove_unless_active(client, version):
            raise PublishError(f"publishing {version} failed, active model unchanged: {exc}") from None
        raise PublishError(f"{version} is published and active, but a step after its activation failed: {exc}"
                           ) from None
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
        remove_unless_active(client, version)
        raise
