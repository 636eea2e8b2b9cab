"""Tailor's HTTP service, grouped by role along the request path (see docs/ARCHITECTURE.md).

``api`` (HTTP: blueprints, schemas, auth) -> ``usecases`` (what a request asks for) -> ``infrastructure``
(Redis, the model store, caches) -> ``domain`` (pure rules); ``app`` wires them together. ``create_app``
is re-exported lazily so that ``import service.domain`` stays free of Flask.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in {"create_app", "Tailor", "API_VERSION"}:
        from service.app import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'service' has no attribute {name!r}")
