"""Customer profile: orders, spend, first/last purchase, journey stage, top items and categories.

Computed from the published record plus the live purchases newer than the model's data, so a purchase
event moves a "new" visitor to "first-time buyer" at once. Journey stages (thresholds configurable) are
``scoring.journey``'s, shared with the audiences of the service and of ``tailor audience``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from scoring.history import SECONDS_PER_DAY
from scoring.journey import STAGES, StageRules, journey_stage
from service.domain.customer import CustomerState, purchase_totals

__all__ = ("STAGES", "StageRules", "build_profile", "day_to_iso", "journey_stage")


def day_to_iso(day: float | None) -> str | None:
    if day is None:
        return None
    return datetime.fromtimestamp(round(day * SECONDS_PER_DAY), tz=UTC).isoformat().replace("+00:00", "Z")


def build_profile(state: CustomerState, *, item_ids: Any, item_index: dict[str, int],
                  item_meta: list[dict[str, Any]], countries: list[str], data_end_day: float, now_day: float,
                  rules: StageRules, top: int = 5, segments: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The profile document (JSON-ready); ``segments``: the model's segment columns and their values."""
    record = state.record
    live = state.live_after(data_end_day)
    totals = purchase_totals(state, data_end_day, item_index, item_meta)
    item_orders: dict[str, float] = defaultdict(float)
    item_quantity: dict[str, float] = defaultdict(float)
    if record is not None:
        for col, n, q in zip(record.items.tolist(), record.orders.tolist(), record.quantity.tolist(), strict=True):
            if 0 <= col < len(item_meta):
                item_orders[str(item_ids[col])] += n
                item_quantity[str(item_ids[col])] += q
    for p in live:
        item_orders[p.item_id] += 1
        item_quantity[p.item_id] += p.quantity

    ranked = sorted(item_orders, key=lambda i: (-item_orders[i], -item_quantity[i], i))[:top]
    top_items = []
    for item_id in ranked:
        meta = item_meta[item_index[item_id]] if item_id in item_index else {}
        top_items.append({"item_id": item_id, "title": meta.get("title"), "category": meta.get("category"),
                          "orders": int(item_orders[item_id]), "quantity": round(item_quantity[item_id], 3)})
    category_orders: dict[str, float] = defaultdict(float)
    for item_id, n in item_orders.items():
        if item_id in item_index:
            category = item_meta[item_index[item_id]].get("category")
            if category is not None:
                category_orders[str(category)] += n
    top_categories = [{"category": c, "orders": int(n)} for c, n in
                      sorted(category_orders.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    last = totals.last_day
    country = None
    if record is not None and 0 <= record.country < len(countries):
        country = countries[record.country]
    customer_segments: dict[str, str | None] = {}
    for j, (name, values) in enumerate((segments or {}).items()):
        index = record.segments[j] if record is not None and j < len(record.segments) else -1
        customer_segments[name] = values[index] if 0 <= index < len(values) else None
    return {
        "customer_id": state.customer_id,
        "known": state.known,
        "orders": totals.orders,
        "spend": round(totals.spend, 2),
        "first_purchase": day_to_iso(totals.first_day),
        "last_purchase": day_to_iso(last),
        "days_since_last_purchase": None if last is None else round(max(now_day - last, 0.0), 1),
        "journey_stage": journey_stage(totals.orders, last, now_day, rules),
        "country": country,
        "segments": customer_segments,
        "top_items": top_items,
        "top_categories": top_categories,
        "live_purchases": len(live),
        "session_items": len(state.session),
    }
