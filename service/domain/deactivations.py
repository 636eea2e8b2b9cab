"""Which items are never answered: the catalogue's inactive ones, overridden item by item by the admin's
``PATCH /v1/items/{id}`` (stored as a Redis hash of JSON objects). Pure: the serving state and ``tailor
audience`` both apply these rules to what they read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def parse_overrides(raw: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """The overrides hash, skipping entries that are not JSON objects (never fail the poll on one bad value)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        try:
            parsed = json.loads(value)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            out[key.decode("utf-8", "replace")] = parsed
    return out


def inactive_items(catalogue_inactive: Iterable[int], overrides: Mapping[str, Mapping[str, Any]],
                   item_index: Mapping[str, int]) -> set[int]:
    """Item indices never to answer: the catalogue's inactive ones, then each admin override (``PATCH
    /v1/items/{id}``) of an item the model knows, which wins. ``tailor audience`` applies the same rule."""
    inactive = set(catalogue_inactive)
    for item_id, override in overrides.items():
        index = item_index.get(item_id)
        if index is None or "active" not in override:
            continue
        if override["active"]:
            inactive.discard(index)
        else:
            inactive.add(index)
    return inactive
