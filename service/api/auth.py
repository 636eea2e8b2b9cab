"""API keys and scopes: ``read`` < ``marketing`` < ``admin`` (a higher scope includes the lower ones).

Keys come from ``TAILOR_API_KEYS``; clients send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
The presented key is compared with every configured key using ``hmac.compare_digest`` (no early exit,
so timing does not reveal how much of a key matched or which one), and keys are never logged or echoed.
With ``TAILOR_PUBLIC_READ=true`` endpoints of scope ``read`` also answer requests without a key; a
*wrong* key is still refused, so a misconfigured client notices.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import flask

from service.domain.errors import Forbidden, Unauthorized
from settings import SCOPES

RANK = {scope: rank for rank, scope in enumerate(SCOPES, start=1)}
_request = flask.request._get_current_object  # type: ignore[attr-defined]


@dataclass(frozen=True)
class KeyRing:
    """The configured keys (as bytes, for compare_digest) and the public-read switch."""

    keys: tuple[tuple[bytes, str], ...]
    public_read: bool

    @classmethod
    def from_config(cls, api_keys: dict[str, str], public_read: bool) -> KeyRing:
        return cls(tuple((key.encode(), scope) for key, scope in api_keys.items()), public_read)

    def scope_of(self, presented: str) -> str | None:
        """The scope of a presented key, or None; always compares against every key."""
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for key, scope in self.keys:
            if hmac.compare_digest(given, key):
                found = scope
        return found


def presented_key(request: flask.Request) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (None when neither is sent).

    ``Authorization`` must use the ``Bearer`` scheme: any other scheme, or a bare key, is refused (401)
    rather than taken as a key, unless an ``X-API-Key`` header is sent as well.
    """
    environ = request.environ  # what request.headers.get reads, without its per-call name mangling
    header = environ.get("HTTP_AUTHORIZATION")
    api_key = environ.get("HTTP_X_API_KEY")
    if header and header.strip():
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if api_key is None:
            raise Unauthorized("the Authorization header must use the Bearer scheme: 'Authorization: Bearer KEY'"
                               " (or send 'X-API-Key: KEY')")
    return api_key.strip() if api_key is not None else None


def check(ring: KeyRing, presented: str | None, required: str) -> None:
    """Raise 401 (missing/unknown key) or 403 (key lacks the scope); return when allowed."""
    if presented is None or presented == "":
        if required == "read" and ring.public_read:
            return
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    scope = ring.scope_of(presented)
    if scope is None:
        raise Unauthorized("the API key is not valid")
    if RANK[scope] < RANK[required]:
        raise Forbidden(f"this API key has scope '{scope}'; this endpoint needs '{required}'",
                        details={"required_scope": required, "key_scope": scope})


def authorize(required: str) -> None:
    """Check the current request against the app's key ring (see ``service.create_app``)."""
    check(flask.current_app.extensions["tailor"].keys, presented_key(_request()), required)
