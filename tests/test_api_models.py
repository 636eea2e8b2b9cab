"""Model versions: listing with metrics, the active version, activation and rollback (admin)."""

from __future__ import annotations

from collections.abc import Callable

import redis
from flask import Flask

from tests.service_helpers import KEYS, ApiClient, Models, TrainedModel, assert_error, wait_for
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


def test_list_and_active(make_app: Callable[..., Flask], models: Models, redis_client: redis.Redis):
    publish_model(redis_client, models.retail.path)
    publish_model(redis_client, models.retail_popular.path)
    api = ApiClient(make_app())
    listing = api.get("/v1/models").get_json()
    assert listing["active"] == models.retail_popular.version
    assert listing["serving"] == models.retail_popular.version
    assert [v["version"] for v in listing["versions"]] == [models.retail_popular.version, models.retail.version]
    first = listing["versions"][1]
    assert first["algorithm"] == "item-knn" and first["counts"]["customers"] == 300 and first["active"] is False
    assert [h["action"] for h in listing["history"]][:2] == ["publish", "publish"]
    active = api.get("/v1/models/active").get_json()
    assert active["version"] == models.retail_popular.version and active["algorithm"] == "popular"
    assert active["data_until"] == models.retail.artifact.manifest["data"]["last_timestamp"]


def test_every_time_of_the_model_endpoints_is_iso_8601(make_app: Callable[..., Flask], models: Models,
                                                      redis_client: redis.Redis):
    """`published_at` (epoch seconds in Redis) is ISO like `created_at` next to it, to the second, as are
    `loaded_at` and the history's `at`; the same values `tailor models list --json` prints (redis_state)."""
    import re
    from datetime import datetime

    from redis_state.versions import list_versions

    publish_model(redis_client, models.retail.path)
    api = ApiClient(make_app())

    def iso(value: object) -> datetime:
        assert isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
        return datetime.fromisoformat(value)

    listing = api.get("/v1/models").get_json()
    (version,) = listing["versions"]
    assert iso(version["published_at"]) >= iso(version["created_at"])
    assert all(iso(line["at"]) for line in listing["history"])
    active = api.get("/v1/models/active").get_json()
    assert iso(active["published_at"]) == iso(version["published_at"])
    assert iso(active["loaded_at"]) >= iso(active["published_at"])
    iso(active["created_at"])
    assert [v["published_at"] for v in list_versions(redis_client)] == [version["published_at"]]


def test_activate_and_rollback(make_app: Callable[..., Flask], models: Models, redis_client: redis.Redis):
    publish_model(redis_client, models.retail.path)
    publish_model(redis_client, models.retail_popular.path)
    admin = ApiClient(make_app(), key=KEYS["admin"])
    other = ApiClient(make_app(TAILOR_MODEL_POLL_S="0.25"))
    assert other.get("/v1/models/active").get_json()["version"] == models.retail_popular.version

    response = admin.put("/v1/models/active", json={"version": models.retail.version})
    assert response.get_json() == {"version": models.retail.version, "serving": models.retail.version}
    wait_for(lambda: other.get("/v1/models/active").get_json()["version"] == models.retail.version, 3.0)

    rolled = admin.post("/v1/models/rollback").get_json()
    assert rolled["version"] == models.retail_popular.version
    assert admin.get("/v1/popular").get_json()["model_version"] == models.retail_popular.version


def test_activation_errors_and_scopes(make_app: Callable[..., Flask], retail: TrainedModel):
    admin = ApiClient(make_app(), key=KEYS["admin"])
    assert_error(admin.put("/v1/models/active", json={"version": "19990101T000000Z-nope-0000"}), 404, "not_found")
    assert_error(admin.put("/v1/models/active", json={}), 400, "invalid_input")
    assert_error(admin.post("/v1/models/rollback"), 409, "conflict")
    marketing = ApiClient(admin.app, key=KEYS["marketing"])
    assert_error(marketing.put("/v1/models/active", json={"version": retail.version}), 403, "forbidden")


def test_no_model_published_yet(make_app: Callable[..., Flask], redis_url: str):
    api = ApiClient(make_app())
    for url in ("/v1/models/active", "/v1/popular", "/v1/customers/1/recommendations", "/v1/items/x/similar"):
        assert_error(api.get(url), 503, "no_active_model")
    assert_error(api.get("/readyz", key=None), 503, "not_ready")
    assert api.get("/v1/models").get_json() == {"active": None, "serving": None, "versions": [], "history": []}


def test_a_locked_version_list_is_a_conflict_not_a_missing_version(make_app: Callable[..., Flask], models: Models,
                                                                   redis_client: redis.Redis, monkeypatch):
    """While another model change holds the lock past the wait, activate and rollback answer 409 and change
    nothing (not 404: the version exists)."""
    from redis_state import keys, versions

    publish_model(redis_client, models.retail.path)
    publish_model(redis_client, models.retail_popular.path)
    monkeypatch.setattr(versions, "LOCK_WAIT_S", 0.2)
    admin = ApiClient(make_app(), key=KEYS["admin"])
    lock = redis_client.lock(keys.MODEL_LOCK, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        for answer in (admin.put("/v1/models/active", json={"version": models.retail.version}),
                       admin.post("/v1/models/rollback")):
            assert_error(answer, 409, "conflict")
            assert "still running" in answer.get_json()["error"]["message"]
    finally:
        lock.release()
    assert admin.get("/v1/models/active").get_json()["version"] == models.retail_popular.version
