"""Message slots: variants with templated content, picked per customer by the bandit, sticky per customer.

Templates use ``{placeholder}`` or ``{placeholder|fallback}`` (``{{`` and ``}}`` for literal braces).
Rendering is a single pass of literal substitution - no ``str.format``, no attribute or index access, and
a value that itself contains braces is inserted as plain text - so neither marketers' templates nor
catalogue data can reach into objects. A placeholder without a value renders its fallback (or nothing,
after which doubled spaces and a space before punctuation are tidied).

A customer keeps the variant they were shown for ``sticky_days``: the repeat answer carries the original
decision id and propensity (the unit of the experiment is the customer-period, so rewards and the
off-policy estimate stay consistent) and counts as another impression, not another decision.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain import reports
from service.domain.targeting import (
    IDENTIFIER,
    DefinitionError,
    as_time,
    check_identifier,
    is_number,
    isoformat,
)

MIN_VARIANTS, MAX_VARIANTS = 2, 20
MAX_CONTENT = 2_000
MAX_STICKY_DAYS = 365.0
TONE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

#: What templates may use; values come from the customer's profile and recommendations.
PLACEHOLDERS = {
    "first_name": "the customer's first name (not stored by the service: always give a fallback)",
    "top_category": "category the customer ordered most",
    "top_item": "title of the item the customer ordered most",
    "recommended_item": "title of the customer's first recommendation",
    "recommended_item_id": "id of the customer's first recommendation",
    "country": "the customer's country",
    "journey_stage": "new, first-time buyer, repeat or lapsed",
}


# -- templates -----------------------------------------------------------------------------------------
class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Placeholder:
    name: str
    fallback: str


_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[str | Placeholder, ...]:
    """Literal strings and placeholders; ``TemplateError`` for stray braces or unknown names."""
    parts: list[str | Placeholder] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        if match.start() > pos:
            parts.append(text[pos:match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) is None:
            raise TemplateError(f"unmatched {token!r} at position {match.start()} (write {token * 2} for a brace)")
        else:
            name, _, fallback = match.group(1).partition("|")
            name = name.strip()
            if not _NAME.match(name) or name not in PLACEHOLDERS:
                raise TemplateError(f"unknown placeholder {{{name}}} at position {match.start()}; "
                                    f"known: {', '.join(sorted(PLACEHOLDERS))}")
            parts.append(Placeholder(name, fallback))
        pos = match.end()
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def placeholders(text: str) -> set[str]:
    return {p.name for p in parse_template(text) if isinstance(p, Placeholder)}


_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_PUNCT = re.compile(r"[ \t]+([,.!?;:])")


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill a template; missing or empty values give the placeholder's fallback."""
    out: list[str] = []
    missing = False
    for part in parse_template(text):
        if isinstance(part, str):
            out.append(part)
            continue
        value = values.get(part.name)
        text_value = "" if value is None else str(value).strip()
        if not text_value:
            text_value = part.fallback
            missing = missing or not text_value
        out.append(text_value)
    rendered = "".join(out)
    if missing:
        rendered = _SPACE_PUNCT.sub(r"\1", _SPACES.sub(" ", rendered)).strip()
    return rendered


# -- definitions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    id: str
    content: str
    tone: str | None = None


@dataclass(frozen=True)
class MessageSlot:
    slot: str
    variants: tuple[Variant, ...]
    exploration: float = 0.1
    sticky_days: float = 7.0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def variant_ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.variants)

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> MessageSlot:
        return cls(
            slot=str(doc["slot"]),
            variants=tuple(Variant(str(v["id"]), str(v.get("content", "")), v.get("tone"))
                           for v in doc.get("variants") or ()),
            exploration=0.1 if doc.get("exploration") is None else doc["exploration"],
            sticky_days=7.0 if doc.get("sticky_days") is None else doc["sticky_days"],
            created_at=as_time(doc.get("created_at")),
            updated_at=as_time(doc.get("updated_at")),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "variants": [{"id": v.id, "content": v.content, "tone": v.tone} for v in self.variants],
            "exploration": self.exploration,
            "sticky_days": self.sticky_days,
            "created_at": None if self.created_at is None else isoformat(self.created_at),
            "updated_at": None if self.updated_at is None else isoformat(self.updated_at),
        }


def _number_in(value: Any, low: float, high: float) -> bool:
    return is_number(value) and low <= value <= high


def validate(slot: MessageSlot) -> None:
    """Raise ``DefinitionError`` naming every field at fault."""
    check_identifier(slot.slot, "slot")
    errors: dict[str, str] = {}
    if not MIN_VARIANTS <= len(slot.variants) <= MAX_VARIANTS:
        errors["variants"] = f"between {MIN_VARIANTS} and {MAX_VARIANTS} variants"
    seen: set[str] = set()
    for i, v in enumerate(slot.variants):
        if not IDENTIFIER.match(v.id):
            errors[f"variants.{i}.id"] = "1-64 characters: letters, digits, '.', '_' or '-'"
        elif v.id in seen:
            errors[f"variants.{i}.id"] = f"duplicate variant id {v.id!r}"
        seen.add(v.id)
        if not v.content.strip() or len(v.content) > MAX_CONTENT:
            errors[f"variants.{i}.content"] = f"required, at most {MAX_CONTENT} characters"
        else:
            try:
                parse_template(v.content)
            except TemplateError as exc:
                errors[f"variants.{i}.content"] = str(exc)
        if v.tone is not None and not (isinstance(v.tone, str) and TONE.match(v.tone)):
            errors[f"variants.{i}.tone"] = "lower-case tag of at most 32 characters, e.g. value, urgency"
    if not _number_in(slot.exploration, 0.0, 1.0):
        errors["exploration"] = "a number in [0, 1]"
    if not _number_in(slot.sticky_days, 0.0, MAX_STICKY_DAYS):
        errors["sticky_days"] = f"a number in [0, {MAX_STICKY_DAYS:g}] (0 = decide afresh every time)"
    if errors:
        raise DefinitionError(errors)


# -- deciding ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sticky:
    variant: str
    decision_id: str
    propensity: float
    explore: bool
    at: float  # epoch seconds of the decision
    contextual: bool | None = None  # whether the bandit chose with the customer's context (None: older record)

    def encode(self) -> str:
        doc: dict[str, Any] = {"v": self.variant, "d": self.decision_id, "p": self.propensity,
                               "e": int(self.explore), "t": round(self.at, 3)}
        if self.contextual is not None:
            doc["c"] = int(self.contextual)
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Sticky | None:
        if not raw:
            return None
        try:
            d = json.loads(raw)
            return cls(str(d["v"]), str(d["d"]), float(d["p"]), bool(d.get("e")), float(d["t"]),
                       None if d.get("c") is None else bool(d["c"]))
        except (ValueError, KeyError, TypeError):
            return None


def message_answer(slot: MessageSlot, variant: Variant, decision_id: str | None, propensity: float, explore: bool,
                   sticky: bool, values: Callable[[set[str]], Mapping[str, Any]],
                   contextual: bool | None = None) -> dict[str, Any]:
    """The answer of one decision: the variant's content rendered with the customer's values."""
    needed = placeholders(variant.content)
    content = render(variant.content, values(needed) if needed else {})
    answer: dict[str, Any] = {
        "slot": slot.slot,
        "variant": {"id": variant.id, "content": content, "tone": variant.tone},
        "decision_id": decision_id,
        "propensity": round(propensity, 6),
        "policy": "explore" if explore else "bandit",
        "sticky": sticky,
    }
    if contextual is not None:
        answer["contextual"] = contextual
    return answer


def slot_report(slot: MessageSlot, counters: Mapping[str, float], *, deleted: bool = False) -> dict[str, Any]:
    """Per variant: decisions, impressions, clicks, conversions, rewards and their rates (95% Wilson
    intervals, per decision); the uniform share's observed rate; IPS estimates of the learned policy and
    of the uniform policy from all decisions."""
    def count(name: str) -> int:
        return int(counters.get(name, 0))

    known = list(slot.variant_ids)
    seen = {k.split(":", 1)[1] for k in counters if ":" in k and k.split(":", 1)[0] in (
        "decisions", "impressions", "clicks", "conversions", "rewards")}
    removed = sorted(seen - set(known))
    rows = []
    totals = {"decisions": 0, "impressions": 0, "clicks": 0, "conversions": 0, "rewards": 0,
              "explore_decisions": 0, "explore_rewards": 0}
    for vid in known + removed:
        variant = slot.variant(vid)
        row: dict[str, Any] = {"id": vid, "tone": variant.tone if variant else None, "removed": variant is None}
        for name in totals:
            row[name] = count(f"{name}:{vid}")
            totals[name] += row[name]
        row["click_rate"] = reports.rate(row["clicks"], row["decisions"])
        row["conversion_rate"] = reports.rate(row["conversions"], row["decisions"])
        row["reward_rate"] = reports.rate(row["rewards"], row["decisions"])
        row["explore_reward_rate"] = reports.rate(row["explore_rewards"], row["explore_decisions"])
        rows.append(row)
    exploit_decisions = totals["decisions"] - totals["explore_decisions"]
    exploit_rewards = totals["rewards"] - totals["explore_rewards"]
    return {
        "slot": slot.slot,
        "status": "deleted" if deleted else "active",
        "exploration": slot.exploration,
        "sticky_days": slot.sticky_days,
        "totals": {**totals, "reward_rate": reports.rate(totals["rewards"], totals["decisions"])},
        "variants": rows,
        "policy": {
            "bandit_share": {"decisions": exploit_decisions, "rewards": exploit_rewards,
                             "reward_rate": reports.rate(exploit_rewards, exploit_decisions)},
            "uniform_share": {"decisions": totals["explore_decisions"], "rewards": totals["explore_rewards"],
                              "reward_rate": reports.rate(totals["explore_rewards"], totals["explore_decisions"])},
        },
        "off_policy": reports.ips_summary(counters),
    }
