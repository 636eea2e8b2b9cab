"""The model store: which version is active, that version in process memory, and hot swaps.

Each API process holds the active model (rebuilt from the arrays published to Redis, never per request)
plus the item overrides of ``PATCH /v1/items/{id}`` as one immutable ``ServingState``. A background thread,
started lazily in each process (so after gunicorn forks), polls ``keys.ACTIVE_MODEL`` and the overrides
revision every ``TAILOR_MODEL_POLL_S``; a new version is loaded completely while the old one keeps serving,
then one reference is swapped. A request reads that reference once and uses the same snapshot throughout,
so a swap never mixes two versions in one answer and never fails a request.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from redis_state import keys
from redis_state.codec import array_from_bytes
from redis_state.versions import iso_time
from scoring.models.base import Recommender
from service.domain.deactivations import inactive_items, parse_overrides
from service.infrastructure.model_files import share_arrays
from service.infrastructure.redis_client import OUTAGE_ERRORS, RedisGateway

log = logging.getLogger("tailor.store")

#: After a version fails to load, wait this long before trying it again (a bad upload must not spin).
LOAD_RETRY_S = 5.0


class ModelLoadError(Exception):
    """A published version could not be rebuilt (missing or corrupt blobs)."""


class _Arrays(dict):
    """The ``np.load`` (.npz) interface that ``scoring.artifact.load_model`` expects, over a dict."""

    @property
    def files(self) -> list[str]:
        return list(self)


@dataclass(frozen=True)
class PopularList:
    """A fallback ranking: item indices, best first, with their scores (recent distinct buyers)."""

    items: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A published version rebuilt in memory with the lookups every request needs, precomputed once."""

    version: str
    manifest: dict[str, Any]
    model: Recommender
    item_ids: np.ndarray
    item_index: dict[str, int]
    item_meta: list[dict[str, Any]]
    category_codes: np.ndarray
    category_index: dict[str, int]
    catalogue_inactive: frozenset[int]
    popular: PopularList
    popular_by_country: dict[str, PopularList]
    countries: list[str]
    data_end_day: float
    segments: dict[str, list[str]] = field(default_factory=dict)  # segment column -> values (index -> value)
    popular_by_segment: dict[str, dict[str, PopularList]] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def segment_popular(self, segment: str) -> tuple[str, str, PopularList] | None:
        """``NAME:VALUE`` -> (name, value, that value's popular list), None when the data has no such list.

        Names and values match case-insensitively (``country:united kingdom``); the answer carries them as
        the data spells them. ``country:VALUE`` is the country's list unless a segment column is itself
        named ``country``.
        """
        name, sep, value = segment.partition(":")
        if not sep:
            return None
        for column, lists in self.popular_by_segment.items():
            if column.casefold() == name.casefold():
                found = _casefold_get(lists, value)
                if found is not None:
                    return column, found[0], found[1]
        if name.casefold() == "country" and not any(c.casefold() == "country" for c in self.popular_by_segment):
            found = self.country_popular(value)
            if found is not None:
                return "country", found[0], found[1]
        return None

    def country_popular(self, country: str) -> tuple[str, PopularList] | None:
        """(the country as the data spells it, its popular list), matched case-insensitively; None without one."""
        return _casefold_get(self.popular_by_country, country)

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/models/active`` shows about the version this process serves (times in ISO 8601 UTC)."""
        m = self.manifest
        return {
            "version": self.version, "algorithm": m.get("algorithm"), "params": m.get("params"),
            "created_at": m.get("created_at"), "published_at": iso_time(m.get("published_at")),
            "counts": m.get("counts"), "evaluation": m.get("evaluation"),
            "data_until": (m.get("data") or {}).get("last_timestamp"), "loaded_at": iso_time(self.loaded_at),
        }


def _casefold_get(lists: dict[str, PopularList], value: str) -> tuple[str, PopularList] | None:
    found = lists.get(value)
    if found is not None:
        return value, found
    wanted = value.strip().casefold()
    for key, ranking in lists.items():
        if key.casefold() == wanted:
            return key, ranking
    return None


@dataclass(frozen=True, eq=False)
class ServingState:
    """One consistent snapshot: a model plus the items that must never be returned."""

    model: LoadedModel
    inactive: np.ndarray  # sorted item indices (int64)
    inactive_set: frozenset[int]
    overrides: dict[str, dict[str, Any]]
    overrides_rev: int


def build_state(model: LoadedModel, overrides: dict[str, dict[str, Any]], rev: int) -> ServingState:
    """Combine the catalogue's active flags with the admin overrides (the override wins)."""
    inactive = inactive_items(model.catalogue_inactive, overrides, model.item_index)
    return ServingState(model, np.asarray(sorted(inactive), dtype=np.int64), frozenset(inactive), overrides, rev)


def _popular(entry: dict[str, Any] | None, n_items: int) -> PopularList:
    entry = entry or {}
    items = np.asarray(entry.get("items", []), dtype=np.int64)
    scores = np.asarray(entry.get("recent_buyers", [0] * len(items)), dtype=np.float64)
    if len(scores) != len(items):
        scores = np.zeros(len(items), dtype=np.float64)
    keep = (items >= 0) & (items < n_items)
    return PopularList(items[keep], scores[keep])


def load_version(client: redis.Redis, version: str, share_dir: str | None = None) -> LoadedModel:
    """Rebuild ``version`` from Redis (manifest, model arrays, item ids and metadata, popular lists); its large
    arrays shared with the host's other processes through ``share_dir`` when given (``share_arrays``)."""
    from scoring.artifact import ArtifactError, load_model

    raw_manifest = client.get(keys.model_manifest(version))
    if raw_manifest is None:
        raise ModelLoadError(f"version {version} has no manifest (not published, or deleted)")
    try:
        manifest = json.loads(raw_manifest)
        # Every publish lists its blobs; the item embeddings are left out: only the message bandit uses
        # them, and it reads them itself on first use (service.usecases.marketing); so is the customer list,
        # read by ``service.usecases.read_ahead`` alone.
        names = [str(name) for name in manifest["blobs"]
                 if name not in ("item_embeddings", keys.CUSTOMERS_LATEST_FIRST)]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.get(keys.model_blob(version, name))
        blobs = {name: blob for name, blob in zip(names, pipe.execute(), strict=True) if blob is not None}
        arrays = _Arrays(share_arrays({name[len("model/"):]: array_from_bytes(blob) for name, blob in blobs.items()
                                       if name.startswith("model/")}, version, share_dir))
        model = load_model(manifest, arrays)
        item_ids = np.asarray(array_from_bytes(blobs["item_ids"]), dtype=str)
        items = json.loads(blobs.get("items.json", b"[]"))
        popular = json.loads(blobs.get("popular.json", b"{}"))
        countries = json.loads(blobs.get("countries.json", b"[]"))
        segments = json.loads(blobs.get("segments.json", b"{}"))  # absent in versions published before it
    except (KeyError, ValueError, TypeError, ArtifactError) as exc:
        raise ModelLoadError(f"version {version} is incomplete or corrupt: {type(exc).__name__}: {exc}") from None
    return assemble(version, manifest, model, item_ids, items, popular, countries, segments)


def assemble(version: str, manifest: dict[str, Any], model: Recommender, item_ids: np.ndarray,
             items: list[dict[str, Any]], popular: dict[str, Any], countries: list[str],
             segments: dict[str, list[str]] | None = None) -> LoadedModel:
    """Precompute the per-item lookups (metadata, category codes, inactive flags) of a version."""
    n = len(item_ids)
    if len(items) != n:
        items = [{"item_id": str(i)} for i in item_ids]
    meta: list[dict[str, Any]] = []
    categories: dict[str, int] = {}
    codes = np.full(n, -1, dtype=np.int32)
    inactive: set[int] = set()
    for index, (item_id, item) in enumerate(zip(item_ids, items, strict=True)):
        category = item.get("category")
        meta.append({"item_id": str(item_id), "title": item.get("title"), "price": item.get("price"),
                     "category": category})
        if category is not None:
            codes[index] = categories.setdefault(str(category), len(categories))
        if item.get("active") is False:
            inactive.add(index)
    from scoring.artifact import data_end_day

    end_day = data_end_day(manifest)
    by_country = {str(c): _popular(entry, n) for c, entry in (popular.get("by_country") or {}).items()}
    by_segment = {str(name): {str(v): _popular(entry, n) for v, entry in (lists or {}).items()}
                  for name, lists in (popular.get("by_segment") or {}).items()}
    return LoadedModel(
        version=version, manifest=manifest, model=model, item_ids=item_ids,
        item_index={str(item_id): i for i, item_id in enumerate(item_ids)}, item_meta=meta,
        category_codes=codes, category_index=categories, catalogue_inactive=frozenset(inactive),
        popular=_popular(popular.get("global"), n), popular_by_country=by_country,
        countries=[str(c) for c in countries], data_end_day=float(end_day),
        segments={str(name): [str(v) for v in values] for name, values in (segments or {}).items()},
        popular_by_segment=by_segment,
    )


class ModelStore:
    """The active ``ServingState`` of this process, kept current by a lazily started poller thread."""

    def __init__(self, gateway: RedisGateway, poll_s: float, share_dir: str | None = None) -> None:
        self.gateway = gateway
        self.poll_s = poll_s
        self.share_dir = share_dir or None
        self._state: ServingState | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        # Serialises refreshes and local override updates, so no update is overwritten by a stale one.
        self._refresh_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[str, float] = {}
        self.last_poll_ok = False
        self.wanted_version: str | None = None  # what Redis said is active at the last poll that answered
        # Called with the new state whenever another model version starts being served (poller thread; keep short).
        self.on_new_version: list[Callable[[ServingState], None]] = []

    def current(self) -> ServingState | None:
        """The snapshot to serve from (None until a version is loaded); starts the poller in a new process."""
        if self._pid != os.getpid():
            self.start()
        return self._state

    def start(self, wait_s: float = 0.0) -> None:
        """Load the active version now and start polling (idempotent; re-run after a fork).

        ``wait_s``: keep retrying a load that failed (Redis not answering yet, e.g. connect timeouts while
        all workers boot at once) for up to this long, so that a worker does not take requests it can only
        answer with 503 until its next poll. The process counts as started only once the first load is
        done: a request arriving meanwhile waits on the lock for it rather than finding no model.
        """
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self._failed.clear()
            deadline = time.monotonic() + wait_s
            self._safe_refresh()
            while self._starting_short() and time.monotonic() < deadline:
                time.sleep(0.1)
                self._failed.clear()  # a worker about to take requests retries at once, not after LOAD_RETRY_S
                self._safe_refresh()
            self._thread = threading.Thread(target=self._run, name="tailor-model-poll", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _starting_short(self) -> bool:
        """Still worth waiting for at start: Redis did not answer, or a version is active but none is loaded
        (its load failed, e.g. timed out while every worker loads at once). Nothing active: nothing to wait for."""
        return not self.last_poll_ok or (self._state is None and self.wanted_version is not None)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.poll_s):
            self._safe_refresh()

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception:  # the poller must survive anything; the next poll tries again
            log.exception("model poll failed")

    def refresh(self) -> bool:
        """One poll: pick up a newly activated version and changed overrides; True if the state changed."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        # The poller's own client, never the request breaker: a slow poll must not fail requests.
        try:
            pipe = self.gateway.background.pipeline(transaction=False)
            pipe.get(keys.ACTIVE_MODEL)
            pipe.get(keys.ITEM_OVERRIDES_REV)
            active_raw, rev_raw = pipe.execute()
        except OUTAGE_ERRORS as exc:
            self.last_poll_ok = False
            log.warning("model poll: Redis unreachable (%s)", type(exc).__name__)
            return False
        except redis.RedisError as exc:
            self.last_poll_ok = False
            log.warning("model poll: Redis error %s", type(exc).__name__)
            return False
        self.last_poll_ok = True
        state = self._state
        model = state.model if state else None
        version = active_raw.decode("utf-8", "replace") if active_raw else None
        self.wanted_version = version
        if version and (model is None or model.version != version) and self._may_try(version):
            model = self._load(version) or model
        if model is None:
            return False
        rev = int(rev_raw) if rev_raw and rev_raw.isdigit() else 0
        overrides = state.overrides if state is not None else {}
        if state is None or rev != state.overrides_rev:
            try:
                overrides = parse_overrides(self.gateway.loads.hgetall(keys.ITEM_OVERRIDES))
            except redis.RedisError as exc:
                log.warning("could not read item overrides (%s); keeping the previous ones", type(exc).__name__)
                rev = state.overrides_rev if state is not None else -1
        if state is not None and model is state.model and rev == state.overrides_rev:
            return False
        self._state = build_state(model, overrides, rev)
        if state is None or model is not state.model:
            for listener in self.on_new_version:
                listener(self._state)
        return True

    def _may_try(self, version: str) -> bool:
        failed_at = self._failed.get(version)
        return failed_at is None or time.monotonic() - failed_at > LOAD_RETRY_S

    def _load(self, version: str) -> LoadedModel | None:
        started = time.perf_counter()
        try:
            model = load_version(self.gateway.loads, version, self.share_dir)
        except (ModelLoadError, redis.RedisError) as exc:
            self._failed[version] = time.monotonic()
            log.warning("could not load model %s, still serving the previous one: %s", version, exc)
            return None
        self._failed.pop(version, None)
        log.info("model %s loaded in %.2fs (%d items, algorithm %s)", version, time.perf_counter() - started,
                 model.n_items, model.manifest.get("algorithm"))
        return model

    def apply_override(self, item_id: str, override: dict[str, Any]) -> None:
        """Apply an override made by this process at once (others see it at their next poll)."""
        with self._refresh_lock:
            state = self._state
            if state is None:
                return
            overrides = {**state.overrides, item_id: override}
            self._state = build_state(state.model, overrides, state.overrides_rev)
