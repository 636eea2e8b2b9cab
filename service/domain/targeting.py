"""What promotions and message slots share: customer facts, identifiers, times and decision ids.

Their stored definitions live in ``service.infrastructure.definitions``; this module stays pure.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from service.domain.errors import InvalidInput

#: Promotion ids and slot names: they become part of Redis keys and decision ids, so no braces, colons,
#: glob characters or spaces.
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IDENTIFIER_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"

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
    """The parts of a served model version that targeting reads (``model_store.LoadedModel`` has them)."""

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
