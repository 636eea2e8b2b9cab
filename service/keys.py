"""The Redis key layout: the one module that names keys, used by the training job and the service alike.

Every key starts with ``tailor:``. Keys that are read or written together carry the same hash tag
(``{...}``) so that they live in one Redis Cluster slot; no command ever touches keys of two slots:

* a model version's blobs share ``{m:VERSION}``; activation is a single-key ``SET`` of ``models:active``;
* a customer's keys (published history per version, live purchases, sticky message variants, promotion
  caps) share ``{c:CUSTOMER_ID}``;
* a promotion's counters share ``{p:PROMOTION_ID}`` and a message slot's bandit state ``{s:SLOT}``.

See docs/ARCHITECTURE.md for the value formats.
"""

from __future__ import annotations

PREFIX = "tailor"

# -- models --------------------------------------------------------------------------------------------
ACTIVE_MODEL = f"{PREFIX}:models:active"  # string: the active version id
MODEL_VERSIONS = f"{PREFIX}:models:versions"  # zset: version -> published-at (epoch seconds)
MODEL_HISTORY = f"{PREFIX}:models:history"  # list of JSON lines: publish/activate/rollback/retrain log


def model_manifest(version: str) -> str:
    """JSON manifest of a published version (also the marker that its upload completed)."""
    return f"{PREFIX}:model:{{m:{version}}}:manifest"


def model_blob(version: str, name: str) -> str:
    """One array or metadata document of a version (``.npy`` bytes or JSON)."""
    return f"{PREFIX}:model:{{m:{version}}}:blob:{name}"


def model_blob_pattern(version: str) -> str:
    return f"{PREFIX}:model:{{m:{version}}}:*"


# -- customers -----------------------------------------------------------------------------------------
def customer_history(version: str, customer_id: str) -> str:
    """Packed purchase history of a customer as published with ``version`` (item indices of that version)."""
    return f"{PREFIX}:hist:{version}:{{c:{customer_id}}}"


def customer_history_pattern(version: str) -> str:
    return f"{PREFIX}:hist:{version}:*"


def customer_live(customer_id: str) -> str:
    """Hash item_id -> JSON purchase stats from events received after training (the live overlay)."""
    return f"{PREFIX}:live:{{c:{customer_id}}}"


def customer_session(customer_id: str) -> str:
    """Hash item_id -> JSON of recent non-purchase interactions (views, carts, clicks) for session recs."""
    return f"{PREFIX}:session:{{c:{customer_id}}}"


# -- items ---------------------------------------------------------------------------------------------
ITEM_OVERRIDES = f"{PREFIX}:items:overrides"  # hash item_id -> JSON {"active": bool, ...} (admin PATCH)

# -- events --------------------------------------------------------------------------------------------
EVENTS_STREAM = f"{PREFIX}:events"  # stream of accepted events, capped (MAXLEN ~) for retraining


def event_seen(event_id: str) -> str:
    """Idempotency marker of an event id (SET NX with a TTL)."""
    return f"{PREFIX}:event:{{e:{event_id}}}"
