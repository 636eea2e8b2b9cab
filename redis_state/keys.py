"""The Redis key layout: the one module that names keys, used by the training job and the service alike.

Every key starts with ``tailor:``. Keys that are read or written together carry the same hash tag
(``{...}``) so that they live in one Redis Cluster slot; no command ever touches keys of two slots:

* a model version's blobs share ``{m:VERSION}``; activation is a single-key ``SET`` of ``models:active``;
* a customer's keys (published history per version, live purchases, session, idempotency markers of
  their events, sticky message variants) share ``{c:CUSTOMER_ID}``;
* a promotion's counters, decisions and per-customer frequency caps share ``{p:PROMOTION_ID}`` (cap and
  budget are checked in one Lua script) and a message slot's bandit state ``{s:SLOT}``.

Ids are data, never key syntax: every id that goes into a key (versions, customers, events, promotions,
slots, decisions, blob names) passes through ``encode_id``. An id holding a brace (or one of the escape
sequences ``%25``, ``%7B``, ``%7D``) is percent-encoded (``%``, ``{``, ``}``); any other id is used as it is.
So an encoded id never contains a brace: the hash tag of a key is always the intended one (``{c:ID}`` ends
at the first ``}``), and two distinct ids never give the same key (the encoding is injective: an encoded id
always holds one of the three escape sequences, an unencoded one never does). Ordinary ids (``12345``,
``A-1.b_c``, ``user:7``, ``50%off``) are unchanged, so existing data stays readable without a migration.
Key *patterns* (SCAN) also escape the glob characters of the id, so a pattern never matches another id's
keys.

See docs/ARCHITECTURE.md for the value formats.
"""

from __future__ import annotations

import re

PREFIX = "tailor"

_ENCODE = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
_ESCAPES = ("%25", "%7B", "%7D")
_DECODE = re.compile(r"%(25|7B|7D)")
_DECODED = {"25": "%", "7B": "{", "7D": "}"}
_GLOB = re.compile(r"([*?\[\]\\])")


def encode_id(value: str) -> str:
    """An id as it appears inside a key: percent-encoded when it holds ``{``, ``}`` or an escape sequence,
    else unchanged."""
    if "{" in value or "}" in value or ("%" in value and any(e in value for e in _ESCAPES)):
        return value.translate(_ENCODE)
    return value


def decode_id(value: str) -> str:
    """The inverse of ``encode_id``."""
    if "%" in value and any(e in value for e in _ESCAPES):
        return _DECODE.sub(lambda m: _DECODED[m.group(1)], value)
    return value


def _glob(encoded: str) -> str:
    """An encoded id inside a SCAN pattern: glob characters escaped, so it matches only itself."""
    return _GLOB.sub(r"\\\1", encoded)

# -- models --------------------------------------------------------------------------------------------
ACTIVE_MODEL = f"{PREFIX}:models:active"  # string: the active version id
MODEL_VERSIONS = f"{PREFIX}:models:versions"  # zset: version -> published-at (epoch seconds)
MODEL_HISTORY = f"{PREFIX}:models:history"  # list of JSON lines: publish/activate/rollback/retrain log
MODEL_LOCK = f"{PREFIX}:models:lock"  # string: held while the active pointer or the version list changes


def model_manifest(version: str) -> str:
    """JSON manifest of a published version (also the marker that its upload completed)."""
    return f"{PREFIX}:model:{{m:{encode_id(version)}}}:manifest"


def model_blob(version: str, name: str) -> str:
    """One array or metadata document of a version (``.npy`` bytes or JSON)."""
    return f"{PREFIX}:model:{{m:{encode_id(version)}}}:blob:{encode_id(name)}"


#: The blob of a version listing its customer ids, the most recent buyer first (what API workers read ahead).
CUSTOMERS_LATEST_FIRST = "customers_latest_first"


def model_blob_pattern(version: str) -> str:
    return f"{PREFIX}:model:{{m:{_glob(encode_id(version))}}}:*"


# -- customers -----------------------------------------------------------------------------------------
def customer_history(version: str, customer_id: str) -> str:
    """Packed purchase history of a customer as published with ``version`` (item indices of that version)."""
    return f"{PREFIX}:hist:{encode_id(version)}:{{c:{encode_id(customer_id)}}}"


def customer_history_pattern(version: str) -> str:
    return f"{PREFIX}:hist:{_glob(encode_id(version))}:{{c:*"


def customer_answers(version: str, customer_id: str) -> str:
    """Hash of a customer's finished recommendation answers under ``version``, shared by every API process:
    field = digest of (serving state, request arguments), value = fingerprint of the customer data the
    answer was computed from + the answer's JSON. Expires (``ANSWERS_TTL_S`` in the service)."""
    return f"{PREFIX}:answers:{encode_id(version)}:{{c:{encode_id(customer_id)}}}"


def customer_answers_pattern(version: str) -> str:
    return f"{PREFIX}:answers:{_glob(encode_id(version))}:{{c:*"


def customer_of_history_key(version: str, key: str) -> str | None:
    """The customer id of a ``customer_history`` key of ``version`` (decoded: ids holding braces come back as
    they were given), else None."""
    head = f"{PREFIX}:hist:{encode_id(version)}:{{c:"
    if not (key.startswith(head) and key.endswith("}")):
        return None
    encoded = key[len(head):-1]
    return None if "{" in encoded or "}" in encoded else decode_id(encoded)


LIVE_PREFIX = f"{PREFIX}:live:"
SESSION_PREFIX = f"{PREFIX}:session:"
#: Every key an event changes and a recommendation reads: what the service's customer cache tracks.
CUSTOMER_TRACKED_PREFIXES = (LIVE_PREFIX, SESSION_PREFIX)


def customer_live(customer_id: str) -> str:
    """Hash item_id -> JSON purchase stats from events received after training (the live overlay)."""
    return f"{LIVE_PREFIX}{{c:{encode_id(customer_id)}}}"


#: Every customer's live hash (SCAN): who bought since training, for audiences.
CUSTOMER_LIVE_PATTERN = f"{LIVE_PREFIX}{{c:*"


def customer_session(customer_id: str) -> str:
    """Hash item_id -> JSON of recent non-purchase interactions (views, carts, clicks) for session recs."""
    return f"{SESSION_PREFIX}{{c:{encode_id(customer_id)}}}"


def customer_of_tracked_key(key: str) -> str | None:
    """The customer id of a ``customer_live`` / ``customer_session`` key, else None."""
    for prefix in CUSTOMER_TRACKED_PREFIXES:
        if key.startswith(prefix + "{c:") and key.endswith("}"):
            encoded = key[len(prefix) + 3:-1]
            return None if "{" in encoded or "}" in encoded else decode_id(encoded)
    return None


# -- items ---------------------------------------------------------------------------------------------
ITEM_OVERRIDES = f"{PREFIX}:items:overrides"  # hash item_id -> JSON {"active": bool, ...} (admin PATCH)
ITEM_OVERRIDES_REV = f"{PREFIX}:items:overrides:rev"  # counter bumped on each change: cheap polling

# -- events --------------------------------------------------------------------------------------------
EVENTS_STREAM = f"{PREFIX}:events"  # stream of accepted events, capped (MAXLEN ~) for retraining


#: Hash tag of the events stream's own slot: a key whose tag is the stream's whole name hashes like it.
EVENTS_STREAM_TAG = f"{{{EVENTS_STREAM}}}"


def event_appended(customer_id: str, event_id: str) -> str:
    """Append marker of an event, in the *stream's* slot (``SET NX`` in the script that ``XADD``s it), so a
    retried append of the same event adds nothing; ``{len}:customer:event`` keeps the two ids apart."""
    customer = encode_id(customer_id)
    return f"{PREFIX}:events:{EVENTS_STREAM_TAG}:appended:{len(customer)}:{customer}:{encode_id(event_id)}"


def event_seen(customer_id: str, event_id: str) -> str:
    """Idempotency marker of an event (SET NX with a TTL), in its customer's slot: one script per slot
    checks the markers of a batch and records the new events in the customers' hashes."""
    return f"{PREFIX}:event:{{c:{encode_id(customer_id)}}}:{encode_id(event_id)}"


# -- promotions ----------------------------------------------------------------------------------------
# Definitions of all promotions live in two hashes under one tag so that a change (HSET + INCR of the
# revision counter that API processes poll) is one MULTI. A promotion's serving state shares
# ``{p:PROMOTION_ID}``: the per-customer frequency cap sits under the promotion's tag, not the customer's,
# so that one Lua script checks and counts cap and budget together, atomically.
PROMOTIONS = f"{PREFIX}:promos:{{promos}}:defs"  # hash promotion_id -> JSON definition
PROMOTIONS_DELETED = f"{PREFIX}:promos:{{promos}}:deleted"  # hash: deleted definitions, kept for reports
PROMOTIONS_REV = f"{PREFIX}:promos:{{promos}}:rev"  # counter bumped on every definition change


def promotion_stats(promotion_id: str) -> str:
    """Hash of counters: impressions, clicks, redemptions, pos:N (impressions at rank N)."""
    return f"{PREFIX}:promo:{{p:{encode_id(promotion_id)}}}:stats"


def promotion_cap(promotion_id: str, customer_id: str) -> str:
    """Zset decision_id -> served-at (ms) of one customer: the sliding frequency-cap window, with a TTL."""
    return f"{PREFIX}:promo:{{p:{encode_id(promotion_id)}}}:cap:{encode_id(customer_id)}"


def promotion_decision(promotion_id: str, decision_id: str) -> str:
    """Hash of one served promotion (customer, time, flags); redemption is counted once; TTL = attribution."""
    return f"{PREFIX}:promo:{{p:{encode_id(promotion_id)}}}:decision:{encode_id(decision_id)}"


def promotion_pattern(promotion_id: str) -> str:
    """Every key of one promotion (for the explicit purge)."""
    return f"{PREFIX}:promo:{{p:{_glob(encode_id(promotion_id))}}}:*"


# -- messages ------------------------------------------------------------------------------------------
# Slot definitions as for promotions; a slot's bandit state and report counters share ``{s:SLOT}`` so one
# Lua script records a decision (or a reward) in the model, the counters and the decision log at once.
MESSAGE_SLOTS = f"{PREFIX}:msgs:{{msgs}}:defs"  # hash slot -> JSON definition
MESSAGE_SLOTS_DELETED = f"{PREFIX}:msgs:{{msgs}}:deleted"  # hash: deleted definitions, kept for reports
MESSAGE_SLOTS_REV = f"{PREFIX}:msgs:{{msgs}}:rev"  # counter bumped on every definition change


def message_stats(slot: str) -> str:
    """Hash of report counters per variant plus the inverse-propensity sums of the slot."""
    return f"{PREFIX}:msg:{{s:{encode_id(slot)}}}:stats"


def message_model(slot: str) -> str:
    """Hash of the contextual bandit's sufficient statistics: ``A:SPACE:VARIANT`` / ``b:SPACE:VARIANT``."""
    return f"{PREFIX}:msg:{{s:{encode_id(slot)}}}:model"


def message_decision(slot: str, decision_id: str) -> str:
    """Hash of one decision (variant, context, propensities, flags); TTL = attribution window."""
    return f"{PREFIX}:msg:{{s:{encode_id(slot)}}}:decision:{encode_id(decision_id)}"


def message_pattern(slot: str) -> str:
    """Every key of one slot's state (for the explicit purge)."""
    return f"{PREFIX}:msg:{{s:{_glob(encode_id(slot))}}}:*"


def message_sticky(customer_id: str, slot: str) -> str:
    """JSON of the variant a customer keeps seeing in ``slot`` (with a TTL of the slot's sticky days)."""
    return f"{PREFIX}:sticky:{{c:{encode_id(customer_id)}}}:{encode_id(slot)}"
