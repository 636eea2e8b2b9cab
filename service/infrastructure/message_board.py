"""Message slots in Redis: definitions (cached per process), bandit decisions, sticky variants, feedback.

The templates, validation and reports are pure: ``service.domain.messages``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from redis_state import keys
from service.domain.messages import MessageSlot, Sticky, message_answer, slot_report, validate
from service.domain.targeting import CustomerFacts, DefinitionError, check_identifier
from service.infrastructure.bandit_store import Bandit
from service.infrastructure.definitions import DefinitionStore
from service.infrastructure.scripts import run_scripts


class MessageBoard:
    """Message slots of the whole service: definitions (cached per process), decisions, feedback, reports."""

    def __init__(self, bandit: Bandit | None = None, *, poll_s: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.store: DefinitionStore[MessageSlot] = DefinitionStore(
            keys.MESSAGE_SLOTS, keys.MESSAGE_SLOTS_DELETED, keys.MESSAGE_SLOTS_REV, MessageSlot.from_document,
            poll_s=poll_s, noun="message slot", id_field="slot")
        self.bandit = bandit or Bandit(poll_s=poll_s)
        self.clock = clock

    # -- definitions ----------------------------------------------------------------------------------
    def put(self, client: redis.Redis, slot_name: str, body: Mapping[str, Any]) -> tuple[MessageSlot, bool]:
        check_identifier(slot_name, "slot")
        existing, _ = self.store.load(client, slot_name)
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        created = existing.get("created_at") if existing else None
        try:
            slot = MessageSlot.from_document({**body, "slot": slot_name, "created_at": created or now,
                                              "updated_at": now})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DefinitionError({"variants": f"malformed slot: {exc}"}) from None
        validate(slot)
        is_new = self.store.put(client, slot_name, slot.to_document())
        self.bandit.invalidate(slot_name)
        return slot, is_new

    def get(self, client: redis.Redis, slot_name: str, *, deleted_ok: bool = False) -> tuple[MessageSlot, bool]:
        return self.store.get(client, slot_name, deleted_ok=deleted_ok)

    def list(self, client: redis.Redis) -> list[MessageSlot]:
        docs = self.store.load_all(client)
        return sorted((MessageSlot.from_document(d) for d in docs.values()), key=lambda s: s.slot)

    def delete(self, client: redis.Redis, slot_name: str, *, purge: bool = False) -> None:
        """Delete (the report stays readable) or, with ``purge``, remove the slot and all its data."""
        if not purge:
            self.store.remove(client, slot_name)
            return
        try:
            self.store.remove(client, slot_name, purge_pattern=keys.message_pattern(slot_name))
        finally:
            self.bandit.invalidate(slot_name)

    def live_slot(self, client: redis.Redis, slot_name: str) -> MessageSlot:
        """The slot from this process's cache (at most ``poll_s`` old); ``NotFound`` if there is none."""
        slot = self.store.cached(client).get(slot_name)
        if slot is None:
            raise self.store.not_found(slot_name)
        return slot

    # -- deciding -------------------------------------------------------------------------------------
    def decide(self, client: redis.Redis, slot: MessageSlot, customer: CustomerFacts, *, space: str | None,
               sticky_raw: bytes | None, values: Callable[[set[str]], Mapping[str, Any]],
               preview: bool = False) -> dict[str, Any]:
        """The variant for ``customer`` with its rendered content, decision id and propensity.

        ``sticky_raw`` is the customer's sticky record for the slot (read by the caller together with the
        customer's data, in the same round trip); ``values(names)`` returns the placeholder values needed.
        One pipelined round trip records the decision (slot's hash slot) and the sticky record (customer's).
        ``preview``: the same choice, nothing written (no impression, no decision, no sticky record), and
        ``decision_id`` null for a fresh choice.
        """
        now = self.clock()
        sticky = Sticky.decode(sticky_raw) if slot.sticky_days > 0 else None
        if sticky is not None and now - sticky.at < slot.sticky_days * 86_400 \
                and (kept := slot.variant(sticky.variant)) is not None:
            if not preview:
                client.hincrby(keys.message_stats(slot.slot), f"impressions:{kept.id}", 1)
            return message_answer(slot, kept, sticky.decision_id, sticky.propensity, sticky.explore, True, values,
                                  contextual=sticky.contextual)
        ids = slot.variant_ids
        choice = self.bandit.choose(client, slot.slot, ids, slot.exploration, customer, space)
        if preview:
            return message_answer(slot, slot.variants[choice.variant], None, choice.propensity, choice.explore,
                                  False, values, contextual=bool(choice.space))
        sticky_set = []
        if slot.sticky_days > 0:
            record = Sticky(ids[choice.variant], choice.decision_id, choice.propensity, choice.explore, now,
                            contextual=bool(choice.space))
            sticky_set.append(("SET", keys.message_sticky(customer.customer_id, slot.slot), record.encode(),
                               "EX", max(1, int(slot.sticky_days * 86_400))))
        run_scripts(client, [self.bandit.record(slot.slot, ids, choice, customer.customer_id, now)], sticky_set)
        return message_answer(slot, slot.variants[choice.variant], choice.decision_id, choice.propensity,
                            choice.explore, False, values, contextual=bool(choice.space))

    def feedback(self, client: redis.Redis, slot_name: str, decision_id: str, event_type: str,
                 customer_id: str | None = None) -> str:
        return self.bandit.reward(client, slot_name, decision_id, event_type, customer_id)

    # -- reports --------------------------------------------------------------------------------------
    def report(self, client: redis.Redis, slot_name: str) -> dict[str, Any]:
        slot, deleted = self.get(client, slot_name, deleted_ok=True)
        raw = client.hgetall(keys.message_stats(slot_name))
        return slot_report(slot, {k.decode(): float(v) for k, v in raw.items()}, deleted=deleted)
