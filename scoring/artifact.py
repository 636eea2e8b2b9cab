"""The versioned model directory that `tailor train --out DIR` writes and everything downstream reads.

Layout (no pickle anywhere; every array is loaded with ``allow_pickle=False``)::

    DIR/manifest.json     version, created_at, algorithm + params, data fingerprint, counts,
                          data-quality report, evaluation metrics, library versions, file checksums
    DIR/model.npz         the fitted model's arrays (Recommender.arrays())
    DIR/history.npz       customers x items purchase history (orders, quantity, last_day, first_day) + now_day;
                          first_day (per pair) is absent in older artifacts
    DIR/customer_ids.npy  row index -> customer id (unicode)
    DIR/item_ids.npy      column index -> item id (unicode)
    DIR/customers.npz     per-customer profile: orders, spend, first/last purchase day, country index,
                          segment value indices (customers x segment columns; absent in older artifacts)
    DIR/countries.json    country index -> name
    DIR/segments.json     segment column -> its values (index -> value); absent in older artifacts
    DIR/items.json        item metadata aligned with item_ids: title, price, category
    DIR/popular.json      fallback rankings: global, per country and per segment value (item indices)
    DIR/item_embeddings.npy  16-d item embeddings (customer context for the message bandit)

The directory is assembled under a temporary sibling name and renamed into place, so a crash or a
failed run never leaves a half-written directory that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from scoring import models
from scoring.history import SECONDS_PER_DAY, PurchaseHistory
from scoring.models.base import Recommender

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LIBRARIES = ("tailor", "implicit", "numpy", "scipy", "pandas", "pyarrow")


class ArtifactError(Exception):
    """A model directory is missing, incomplete or corrupt (one-line message naming the file)."""


@dataclass
class CustomerTable:
    """Per-customer aggregates the service shows in profiles and uses for eligibility rules."""

    orders: np.ndarray  # int32: distinct orders
    spend: np.ndarray  # float64: sum of quantity * price where the price is known
    first_day: np.ndarray  # float64 days since epoch
    last_day: np.ndarray  # float64 days since epoch
    country: np.ndarray  # int32 index into `countries`, -1 when unknown
    countries: list[str] = field(default_factory=list)
    segments: dict[str, list[str]] = field(default_factory=dict)  # segment column -> its values
    segment: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int32))
    # ^ int32 (customers x segments), column j indexes the values of the j-th segment; -1 when unknown


@dataclass
class Artifact:
    """A fitted model with everything needed to serve it, in memory."""

    manifest: dict[str, Any]
    model: Recommender
    history: PurchaseHistory
    customer_ids: np.ndarray
    item_ids: np.ndarray
    customers: CustomerTable
    items: list[dict[str, Any]]
    popular: dict[str, Any]
    item_embeddings: np.ndarray

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Item id -> column, built once per artifact for every command that looks items up by id."""
        return {str(item_id): k for k, item_id in enumerate(self.item_ids)}


def new_version_id(created_at: datetime, fingerprint: str) -> str:
    """Sortable, unique and traceable to its data: ``20261124T120000Z-<data sha8>-<random4>``."""
    return f"{created_at:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}-{secrets.token_hex(2)}"


def default_model_dir(version: str, root: str | os.PathLike = "var") -> Path:
    """Where a model goes when no --out is given: ``var/models/VERSION``."""
    return Path(root) / "models" / version


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def history_arrays(history: PurchaseHistory) -> dict[str, np.ndarray]:
    """A history as plain arrays; the matrices share one sparsity structure, stored once."""
    arrays = {
        "indptr": history.orders.indptr,
        "indices": history.orders.indices,
        "orders": history.orders.data,
        "quantity": history.quantity.data,
        "last_day": history.last_day.data,
        "shape": np.asarray(history.shape, dtype=np.int64),
        "now_day": np.asarray([history.now_day], dtype=np.float64),
    }
    if history.first_day is not None:
        arrays["first_day"] = history.first_day.data
    return arrays


def customers_latest_first(model_dir: str | os.PathLike) -> list[str]:
    """The model's customer ids, the most recent purchase first (ties and customers without purchases keep
    their stored order): who is likeliest to come back soon, for work done ahead of requests."""
    root = Path(model_dir)
    ids = np.load(root / "customer_ids.npy", allow_pickle=False)
    with np.load(root / "history.npz", allow_pickle=False) as arrays:
        return latest_first(ids, arrays["indptr"], arrays["last_day"]).tolist()


def latest_first(ids: np.ndarray, indptr: np.ndarray, last_day: np.ndarray) -> np.ndarray:
    """``ids`` ordered by their row's latest purchase day in a CSR history (``indptr``, per-entry ``last_day``),
    most recent first; ties and rows without purchases keep their order."""
    latest = np.full(len(ids), -np.inf)
    bought = np.diff(indptr) > 0
    if bought.any():
        latest[bought] = np.maximum.reduceat(last_day, indptr[:-1][bought])
    return np.asarray(ids)[np.argsort(-latest, kind="stable")]


def history_from_arrays(arrays: Any) -> PurchaseHistory:
    """The history of ``history_arrays``; without ``first_day`` (artifacts written before it was kept) the
    first purchase day per pair stays unknown (None) and audiences fall back to the customer's first day."""
    shape = tuple(int(x) for x in arrays["shape"])
    indptr, indices = arrays["indptr"], arrays["indices"]

    def mat(values: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((values, indices, indptr), shape=shape)

    first = mat(arrays["first_day"]) if "first_day" in arrays else None
    return PurchaseHistory(
        mat(arrays["orders"]), mat(arrays["quantity"]), mat(arrays["last_day"]), float(arrays["now_day"][0]), first
    )


def segment_matrix(customers: CustomerTable) -> np.ndarray:
    """The (customers x segments) int32 index matrix, also when the table was built without segments."""
    if customers.segment.shape == (len(customers.orders), len(customers.segments)):
        return customers.segment.astype(np.int32, copy=False)
    if customers.segments:
        raise ValueError("customer segment indices do not match the segment columns")
    return np.full((len(customers.orders), 0), -1, dtype=np.int32)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_artifact(out_dir: str | os.PathLike, artifact: Artifact) -> Path:
    """Write ``artifact`` to ``out_dir`` atomically (temporary sibling, then rename); return the path."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        np.savez(staging / "model.npz", **artifact.model.arrays())
        np.savez(staging / "history.npz", **history_arrays(artifact.history))
        np.save(staging / "customer_ids.npy", np.asarray(artifact.customer_ids, dtype=str))
        np.save(staging / "item_ids.npy", np.asarray(artifact.item_ids, dtype=str))
        np.save(staging / "item_embeddings.npy", artifact.item_embeddings.astype(np.float32))
        c = artifact.customers
        np.savez(
            staging / "customers.npz",
            orders=c.orders, spend=c.spend, first_day=c.first_day, last_day=c.last_day, country=c.country,
            segments=segment_matrix(c),
        )
        (staging / "countries.json").write_text(json.dumps(c.countries))
        (staging / "segments.json").write_text(json.dumps(c.segments))
        (staging / "items.json").write_text(json.dumps(artifact.items, allow_nan=False))
        (staging / "popular.json").write_text(json.dumps(artifact.popular))
        manifest = dict(artifact.manifest)
        manifest["files"] = {p.name: _sha256(p) for p in sorted(staging.iterdir())}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False))
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    artifact.manifest = manifest
    return target


def _replace_dir(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing target is swapped out only once the new one is whole."""
    if not target.exists():
        staging.rename(target)
        return
    retired = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def read_manifest(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST
    if not Path(model_dir).is_dir():
        raise ArtifactError(f"{model_dir}: no such model directory")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing — not a complete model directory") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported format_version {manifest.get('format_version')!r}")
    return manifest


def verify_files(model_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Check every file against the checksum in the manifest (done before publishing)."""
    for name, expected in manifest.get("files", {}).items():
        path = Path(model_dir) / name
        if not path.exists():
            raise ArtifactError(f"{path}: missing")
        if _sha256(path) != expected:
            raise ArtifactError(f"{path}: checksum mismatch — the model directory was modified or is corrupt")


def load_model(manifest: dict[str, Any], arrays: Any) -> Recommender:
    """The fitted model of a manifest, from an ``np.load``-like mapping of its arrays (no refit)."""
    try:
        return models.load(manifest["algorithm"], manifest["params"], {k: arrays[k] for k in arrays.files})
    except ValueError as exc:
        raise ArtifactError(f"manifest: {exc}") from None


def read_artifact(model_dir: str | os.PathLike, *, verify: bool = False) -> Artifact:
    """Load a model directory written by ``write_artifact``."""
    root = Path(model_dir)
    manifest = read_manifest(root)
    if verify:
        verify_files(root, manifest)
    try:
        with np.load(root / "model.npz", allow_pickle=False) as arrays:
            model = load_model(manifest, arrays)
        with np.load(root / "history.npz", allow_pickle=False) as arrays:
            history = history_from_arrays(arrays)
        with np.load(root / "customers.npz", allow_pickle=False) as arrays:
            segments_file = root / "segments.json"  # written since --segment-col
            segments = json.loads(segments_file.read_text()) if segments_file.exists() else {}
            customers = CustomerTable(
                orders=arrays["orders"], spend=arrays["spend"], first_day=arrays["first_day"],
                last_day=arrays["last_day"], country=arrays["country"],
                countries=json.loads((root / "countries.json").read_text()), segments=segments,
                segment=(arrays["segments"] if "segments" in arrays.files
                         else np.full((len(arrays["orders"]), 0), -1, dtype=np.int32)),
            )
        customer_ids = np.load(root / "customer_ids.npy", allow_pickle=False)
        item_ids = np.load(root / "item_ids.npy", allow_pickle=False)
        items = json.loads((root / "items.json").read_text())
        popular = json.loads((root / "popular.json").read_text())
        embeddings = np.load(root / "item_embeddings.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{root}: incomplete or corrupt model directory ({exc})") from None
    return Artifact(manifest, model, history, customer_ids, item_ids, customers, items, popular, embeddings)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def item_label(meta: dict[str, Any], item_id: str | None = None) -> str:
    """An item for people, as reasons and audiences name it: "TITLE (ID)", or the id alone without a title.
    ``meta`` is one entry of the artifact's item metadata (``items.json``); ``item_id`` when it has none."""
    item_id = str(meta.get("item_id", item_id))
    title = str(meta.get("title") or "").strip()
    return f"{title} ({item_id})" if title else item_id


def iso_to_day(text: str | None) -> float | None:
    """ISO 8601 timestamp -> float days since the epoch (naive timestamps are UTC, like the training data)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / SECONDS_PER_DAY


def data_end_day(manifest: dict[str, Any]) -> float:
    """The day a version's data ends (its last purchase, else its creation): the service's "data" clock, and
    where its live purchases start to count (``service.domain.customer``)."""
    data = manifest.get("data") or {}
    return iso_to_day(data.get("last_timestamp")) or iso_to_day(manifest.get("created_at")) or 0.0
