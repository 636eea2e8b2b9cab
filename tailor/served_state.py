"""What the running service knows beyond a model directory, read from its Redis by the batch commands
(``tailor audience``, ``tailor recommend``) so that their answers are the API's: without the items it has
deactivated, and (``tailor recommend``) with the purchases and views it received since training."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from tailor.errors import CliError

if TYPE_CHECKING:
    import redis

    from redis_state.codec import CustomerRecord
    from scoring.artifact import Artifact
    from scoring.recent_buyers import RecentBuyer
    from training.batch import LiveRow

T = TypeVar("T")
#: Customers whose live and session hashes one pipeline reads.
LIVE_READ_BATCH = 1_000


def read_redis(redis_url: str | None, flag: str, read: Callable[[redis.Redis], T]) -> T:
    """``read(client)`` on the Redis of ``redis_url`` (default ``$REDIS_URL``, then the local default); a
    Redis that cannot be reached or read is a one-line error naming ``flag`` and the (masked) URL."""
    import redis

    from redis_state.versions import connect

    client = connect(redis_url)
    try:
        return read(client)
    except (redis.RedisError, ValueError) as exc:
        raise CliError(f"{flag}: cannot read from {redis_label(redis_url)}: {exc}") from None
    finally:
        client.close()


def redis_label(redis_url: str | None) -> str:
    """The URL that ``redis_url`` resolves to, password masked, for messages."""
    from settings import DEFAULT_REDIS_URL, mask_url

    return mask_url(redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)


def deactivated_items(artifact: Artifact, client: redis.Redis) -> set[int]:
    """Item indices the service never answers: the catalogue's inactive items and those deactivated with
    ``PATCH /v1/items/{id}`` (the service's own rule, ``service.domain.deactivations``)."""
    from redis_state import keys
    from service.domain.deactivations import inactive_items, parse_overrides

    overrides = parse_overrides(client.hgetall(keys.ITEM_OVERRIDES))
    catalogue = (k for k, item in enumerate(artifact.items) if item.get("active") is False)
    return inactive_items(catalogue, overrides, artifact.item_index)


def live_rows(artifact: Artifact, client: redis.Redis, customer_ids: Iterable[str], exclude_purchased: bool,
              session_max_items: int, now_day: float | None = None) -> dict[str, LiveRow]:
    """The customers of ``customer_ids`` the service heard from (purchase, view, cart or click events kept in
    their live and session hashes), each as the API would score them now: published history plus newer
    purchases, or for a customer the model does not know their purchases and session (``answer_basis``),
    with "now" at their latest event (the service's default ``data`` clock) or ``now_day`` (its ``wall``
    clock). Customers without events are left to the model directory's own rows."""
    import pandas as pd

    from redis_state import keys
    from scoring.artifact import data_end_day
    from service.domain.customer import CustomerState, answer_basis, parse_live, parse_session
    from training.batch import LiveRow
    from training.publish import customer_record

    end_day = data_end_day(artifact.manifest)
    heard: list[tuple[str, dict[bytes, bytes], dict[bytes, bytes]]] = []
    unique = list(dict.fromkeys(customer_ids))
    for start in range(0, len(unique), LIVE_READ_BATCH):
        chunk = unique[start:start + LIVE_READ_BATCH]
        # Most customers have no events: one EXISTS each (both keys share the customer's slot) costs half of
        # reading both hashes, and only the customers found are read.
        pipe = client.pipeline(transaction=False)
        for customer_id in chunk:
            pipe.exists(keys.customer_live(customer_id), keys.customer_session(customer_id))
        found = [customer_id for customer_id, count in zip(chunk, pipe.execute(), strict=True) if count]
        if not found:
            continue
        pipe = client.pipeline(transaction=False)
        for customer_id in found:
            pipe.hgetall(keys.customer_live(customer_id))
            pipe.hgetall(keys.customer_session(customer_id))
        replies = pipe.execute()
        heard += [(customer_id, replies[2 * k], replies[2 * k + 1]) for k, customer_id in enumerate(found)
                  if replies[2 * k] or replies[2 * k + 1]]
    if not heard:
        return {}
    rows = pd.Index(artifact.customer_ids).get_indexer(pd.Index([c for c, _, _ in heard], dtype=object))
    found: dict[str, LiveRow] = {}
    for (customer_id, live, session), row in zip(heard, rows.tolist(), strict=True):
        state = CustomerState(customer_id, customer_record(artifact, row) if row >= 0 else None,
                              parse_live(live), parse_session(session, session_max_items))
        if not state.has_events:  # only unreadable values
            continue
        now = now_day if now_day is not None else max(end_day, state.latest_day() or 0.0)
        basis = answer_basis(state, artifact.item_index, len(artifact.item_ids), end_day, now, exclude_purchased)
        found[customer_id] = LiveRow(basis.history, basis.blocked, "session" if basis.session else "personalized")
    return found


def recent_buyers(artifact: Artifact, client: redis.Redis) -> list[RecentBuyer]:
    """Every customer who bought since the model's data (purchase events in their live hashes, found with a
    ``SCAN``), as the API's audiences count them: the model directory's history plus the newer purchases."""
    import pandas as pd

    from scoring.artifact import data_end_day
    from service.infrastructure.recent_buyers import all_recent_buyers
    from training.publish import customer_record

    index = pd.Index(artifact.customer_ids)

    def records(customers: list[str]) -> list[CustomerRecord | None]:
        rows = index.get_indexer(pd.Index(customers, dtype=object)).tolist()
        return [customer_record(artifact, row) if row >= 0 else None for row in rows]

    return all_recent_buyers(client, records, artifact.item_index, artifact.items, data_end_day(artifact.manifest))


def served_version_note(artifact: Artifact, client: redis.Redis) -> str | None:
    """A warning when the Redis serves another version than ``artifact``: the API's answers then come from that
    version, and the batch lists are not theirs."""
    from redis_state.versions import active_version

    active = active_version(client)
    if active == artifact.version:
        return None
    serving = f"serves {active}" if active else "serves no model"
    return (f"note: that Redis {serving}, not {artifact.version}: the lists are this model's, with the service's "
            "deactivations and events, not the API's answers")
