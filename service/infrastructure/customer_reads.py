"""Reading customers' Redis values: one customer in one round trip (the request path), or the customers
published with a version in pipelined batches (a worker reading them ahead of their requests).

A customer is the record of the served version (GET), the live overlay and the session (HGETALL), read by one
Lua script so that the reply is parsed once instead of a pipeline's three.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import redis

from redis_state import keys
from redis_state.codec import array_from_bytes
from service.domain.customer import CustomerState, decode_record, parse_live, parse_session
from service.infrastructure.answer_memo import fingerprint
from service.infrastructure.scripts import Lua, ScriptCall

#: A customer's record (GET), live overlay and session (HGETALL, flat) and extra keys (GET), in one call; with
#: an ARGV, KEYS[4] is the customer's shared answers hash and its field ARGV[1] is read instead of a GET.
READ_CUSTOMER = Lua("""
local out = {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
if #ARGV > 0 then
  out[4] = redis.call('HGET', KEYS[4], ARGV[1])
  return out
end
for i = 4, #KEYS do out[i] = redis.call('GET', KEYS[i]) end
return out
""")


def customer_keys(version: str, customer_id: str) -> list[str]:
    """The keys ``READ_CUSTOMER`` reads first: record, live overlay, session (all in the customer's hash slot)."""
    return [keys.customer_history(version, customer_id), keys.customer_live(customer_id),
            keys.customer_session(customer_id)]


def read_call(version: str, customer_id: str) -> ScriptCall:
    """``READ_CUSTOMER`` of one customer without extra keys."""
    return READ_CUSTOMER, customer_keys(version, customer_id), ()


def decode_customer(customer_id: str, reply: Sequence[object], session_max_items: int) -> tuple[CustomerState, bytes]:
    """The customer of a ``READ_CUSTOMER`` reply and the fingerprint of the raw values (equal: equal data)."""
    blob, live, session = reply[0], _pairs(reply[1]), _pairs(reply[2])
    state = CustomerState(customer_id, decode_record(blob), parse_live(live) if live else [],  # type: ignore[arg-type]
                          parse_session(session, session_max_items) if session else [])
    return state, fingerprint(blob, live, session)  # type: ignore[arg-type]


def published_customers(client: redis.Redis, version: str, limit: int, batch: int) -> Iterator[list[str]]:
    """Ids of the customers published with ``version``, ``batch`` at a time, at most ``limit`` in all: the most
    recent buyers first (the version's ``CUSTOMERS_LATEST_FIRST`` list), or for a version published without
    that list in the order a ``SCAN`` of its records returns them."""
    listed = client.get(keys.model_blob(version, keys.CUSTOMERS_LATEST_FIRST))
    ids = _id_list(listed, limit) if listed is not None else None
    if ids is not None:
        for start in range(0, len(ids), batch):
            yield ids[start:start + batch]
        return
    for found in scanned_customers(client, version, batch):
        if limit <= 0:
            return
        yield found[:limit]
        limit -= len(found)


def scanned_customers(client: redis.Redis, version: str, batch: int) -> Iterator[list[str]]:
    """Ids of every customer with a record of ``version`` (a ``SCAN``, in the server's order), ``batch`` at a
    time; a cluster client's ``scan_iter`` walks every primary."""
    return _scanned(client, keys.customer_history_pattern(version),
                    lambda key: keys.customer_of_history_key(version, key), batch)


def scanned_live_customers(client: redis.Redis, batch: int) -> Iterator[list[str]]:
    """Ids of every customer with a live hash (purchases received as events; a ``SCAN`` of every primary),
    ``batch`` at a time."""
    return _scanned(client, keys.CUSTOMER_LIVE_PATTERN, keys.customer_of_tracked_key, batch)


def _scanned(client: redis.Redis, pattern: str, customer_of: Callable[[str], str | None],
             batch: int) -> Iterator[list[str]]:
    """The customers of the keys matching ``pattern``, each once: ``SCAN`` may return a key twice (when the
    server resizes its table during the scan)."""
    found: list[str] = []
    seen: set[str] = set()
    for raw in client.scan_iter(match=pattern, count=batch):
        customer = customer_of(raw.decode() if isinstance(raw, bytes) else raw)
        if customer is not None and customer not in seen:
            seen.add(customer)
            found.append(customer)
        if len(found) >= batch:
            yield found
            found = []
    if found:
        yield found


def _id_list(blob: bytes, limit: int) -> list[str] | None:
    """The first ``limit`` ids of a stored id array; None when the blob is not one (then the records are scanned)."""
    try:
        ids = array_from_bytes(blob)
    except (ValueError, OSError, EOFError):
        return None
    return [str(customer) for customer in ids[:limit].tolist()] if ids.ndim == 1 else None


def _pairs(flat: object) -> dict[bytes, bytes]:
    values = iter(flat)  # type: ignore[call-overload]
    return dict(zip(values, values, strict=True))
