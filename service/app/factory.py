"""The app factory: ``create_app`` wires settings, Redis, the model store, use cases and blueprints.

The app is stateless apart from an in-memory copy of the active model version (see
``service.infrastructure.model_store``), so any number of processes can run side by side behind a load
balancer; ``service.app.runner`` runs it under gunicorn (``tailor serve``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from service.api import BLUEPRINTS
from service.api.auth import KeyRing
from service.api.console import console_blueprint
from service.api.docs import docs_blueprint
from service.api.framework import TailorApi
from service.app import logs, observability
from service.app.limits import LimitsMiddleware
from service.infrastructure.model_store import ModelStore
from service.infrastructure.redis_client import RedisGateway
from service.infrastructure.repository import Repository
from service.usecases.engine import Engine
from service.usecases.read_ahead import ReadAhead
from service.usecases.trending import TrendingItems
from settings import Settings, unrecognised_variables

API_VERSION = "1.0"


class TailorFlask(Flask):
    """Flask that asks once per function whether it is a coroutine.

    Flask and flask-smorest call ``ensure_sync`` on every hook, view and decorator layer of every request
    (5 calls, each an ``inspect`` look at the code flags); the answer never changes for a function.
    """

    SYNC_MEMO_ENTRIES = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._synced.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._synced) < self.SYNC_MEMO_ENTRIES:
                self._synced[func] = found
        return found


@dataclass
class Tailor:
    """Everything a request needs, stored as ``app.extensions["tailor"]``."""

    settings: Settings
    keys: KeyRing
    gateway: RedisGateway
    store: ModelStore
    repository: Repository
    engine: Engine
    trending: TrendingItems
    read_ahead: ReadAhead

    def close(self) -> None:
        """Stop the model poller and close Redis connections (tests; gunicorn workers just exit)."""
        self.store.close()
        self.repository.customers.close()
        self.gateway.close()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides environment variables by name (e.g. ``{"REDIS_URL": ...}``)."""
    settings = Settings.load(config)
    logs.register_secrets([*settings.api_keys, urlsplit(settings.redis_url).password or ""])
    logs.configure_logging(settings.log_level, settings.log_format)
    app = TailorFlask(__name__)
    app.config.update(
        API_TITLE="Tailor", API_VERSION=API_VERSION, OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_SPEC_OPTIONS={"info": {"description": (
            "Personalization for online shops: recommendations, popular lists, customer profiles and "
            "behaviour events. Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}`. "
            "Authenticate with `Authorization: Bearer KEY` or `X-API-Key: KEY`; scopes: read < marketing "
            "< admin. Every /v1 operation takes only the query parameters it documents (none where it "
            "documents none), each once unless it is a list: an unknown one is a 400 naming it in "
            "`details.query`, never silently ignored, and so is a single-valued one given twice.")}},
    )
    gateway = RedisGateway(settings)
    store = ModelStore(gateway, settings.model_poll_s, settings.model_share_dir)
    repository = Repository(gateway, settings)
    engine = Engine(store, repository, settings)
    app.extensions["tailor"] = Tailor(
        settings=settings, keys=KeyRing.from_config(settings.api_keys, settings.public_read), gateway=gateway,
        store=store, repository=repository, engine=engine, trending=TrendingItems(engine, repository),
        read_ahead=ReadAhead(store, repository, engine, settings.read_ahead),
    )
    observability.install(app, app.extensions["tailor"])
    api = TailorApi(app)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    api.finish_spec()
    app.register_blueprint(docs_blueprint())
    app.wsgi_app = LimitsMiddleware(app.wsgi_app, settings.max_body_bytes)  # type: ignore[method-assign]
    app.register_blueprint(console_blueprint())
    if not settings.api_keys and not settings.public_read:
        logging.getLogger("tailor").warning(
            "no TAILOR_API_KEYS and TAILOR_PUBLIC_READ is off: every /v1 request will get 401")
    for warning in unrecognised_variables():
        logging.getLogger("tailor").warning(warning)
    return app
