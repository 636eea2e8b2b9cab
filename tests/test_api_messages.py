"""Message slots through the real app (Flask test client) against a real Redis with a published model."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from redis_state import keys

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]


def slot(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "variants": [
            {"id": "value", "content": "Save on {top_category|our best sellers}", "tone": "value"},
            {"id": "quality", "content": "Still thinking of {top_item}? Try {recommended_item}.", "tone": "quality"},
            {"id": "support", "content": "Hi {first_name|there}, need help choosing?", "tone": "support"},
        ],
        "sticky_days": 7,
    }
    doc.update(overrides)
    return doc


def event(customer: str, decision_id: str, kind: str = "click") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "customer_id": customer, "type": kind,
            "timestamp": datetime.now(UTC).isoformat(), "decision_id": decision_id}


def assert_error(response: Any, status: int, *path: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    node = error["details"]
    for part in path:
        assert isinstance(node, dict) and part in node, (path, error)
        node = node[part]
    return error


def test_crud(service: Service) -> None:
    created = service.put("/v1/messages/home-banner", slot())
    assert created.status_code == 201
    doc = created.get_json()
    assert doc["slot"] == "home-banner" and doc["exploration"] == 0.1 and len(doc["variants"]) == 3
    changed = service.put("/v1/messages/home-banner", {**doc, "exploration": 0.25})
    assert changed.status_code == 200 and changed.get_json()["exploration"] == 0.25
    assert service.get("/v1/messages/home-banner", "marketing").get_json()["exploration"] == 0.25
    assert [s["slot"] for s in service.get("/v1/messages", "marketing").get_json()["slots"]] == ["home-banner"]
    assert service.delete("/v1/messages/home-banner").status_code == 204
    assert_error(service.get("/v1/messages/home-banner", "marketing"), 404)
    assert_error(service.get(f"/v1/customers/{service.customers[0]}/messages/home-banner"), 404)
    assert service.get("/v1/messages/home-banner/report", "marketing").get_json()["status"] == "deleted"
    assert service.delete("/v1/messages/home-banner?purge=true").status_code == 204
    assert_error(service.get("/v1/messages/home-banner/report", "marketing"), 404)


def test_scopes(service: Service) -> None:
    assert_error(service.put("/v1/messages/s", slot(), scope="read"), 403)
    assert service.client.put("/v1/messages/s", json=slot()).status_code == 401
    service.put("/v1/messages/s", slot())
    assert service.client.get(f"/v1/customers/{service.customers[0]}/messages/s").status_code == 401
    assert_error(service.get("/v1/messages/s/report", "read"), 403)


@pytest.mark.parametrize(("body", "path"), [
    ({"variants": [{"id": "a", "content": "x"}]}, ("json", "variants")),
    ({"variants": [{"id": str(i), "content": "x"} for i in range(21)]}, ("json", "variants")),
    ({"variants": [{"id": "a", "content": "x"}, {"id": "a", "content": "y"}]}, ("json", "variants", "1", "id")),
    ({"variants": [{"id": "a", "content": "Hi {name}"}, {"id": "b", "content": "y"}]},
     ("json", "variants", "0", "content")),
    ({"variants": [{"id": "a", "content": "{0.__class__}"}, {"id": "b", "content": "y"}]},
     ("json", "variants", "0", "content")),
    ({"variants": [{"id": "a", "content": ""}, {"id": "b", "content": "y"}]}, ("json", "variants", "0", "content")),
    ({"variants": [{"id": "a b", "content": "x"}, {"id": "b", "content": "y"}]}, ("json", "variants", "0", "id")),
    ({"variants": [{"id": "a", "content": "x", "tone": "SHOUTING"}, {"id": "b", "content": "y"}]},
     ("json", "variants", "0", "tone")),
    (slot(exploration=2), ("json", "exploration")),
    (slot(sticky_days=-1), ("json", "sticky_days")),
    (slot(sticky_days="week"), ("json", "sticky_days")),
    (slot(extra=True), ("json", "extra")),
    ({}, ("json", "variants")),
])
def test_invalid_slots_are_400_naming_the_field(service: Service, body: dict[str, Any],
                                                path: tuple[str, ...]) -> None:
    assert_error(service.put("/v1/messages/s", body), 400, *path)
    assert service.get("/v1/messages", "marketing").get_json()["slots"] == []


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b"7", b"{", b'{"variants": {}}', b'{"variants": [1, 2]}',
                                 b'{"variants": [{"id": [], "content": {}}]}', b'{"exploration": "NaN"}',
                                 b"\xc3\x28"])
def test_garbage_bodies_never_5xx(service: Service, raw: bytes) -> None:
    response = service.client.put("/v1/messages/g", data=raw, content_type="application/json",
                                  headers=service.headers("marketing"))
    assert 400 <= response.status_code < 500 and "error" in response.get_json()


@pytest.mark.parametrize("name", ["a b", "{x}", "a:b", "*", "-a", "x" * 65])
def test_invalid_slot_names(service: Service, name: str) -> None:
    assert_error(service.put(f"/v1/messages/{name}", slot()), 400, "path", "slot")
    assert service.get(f"/v1/customers/c/messages/{name}").status_code in (400, 404)


def test_customer_variant_rendered_with_propensity_and_sticky(service: Service) -> None:
    service.put("/v1/messages/banner", slot())
    customer = service.customers[0]
    first = service.get(f"/v1/customers/{customer}/messages/banner")
    assert first.status_code == 200
    answer = first.get_json()
    assert answer["slot"] == "banner" and answer["customer_id"] == customer
    assert answer["contextual"] is True and answer["sticky"] is False
    assert 0 < answer["propensity"] <= 1 and answer["decision_id"].startswith("m-")
    assert "{" not in answer["variant"]["content"] and answer["variant"]["tone"] in ("value", "quality", "support")
    again = service.get(f"/v1/customers/{customer}/messages/banner").get_json()
    assert again["sticky"] is True and again["variant"] == answer["variant"]
    assert again["decision_id"] == answer["decision_id"]
    assert again["contextual"] is True, "a sticky repeat keeps how the variant was chosen"

    anonymous = service.get("/v1/customers/first-visit/messages/banner").get_json()
    assert anonymous["contextual"] is False
    repeat = service.get("/v1/customers/first-visit/messages/banner").get_json()
    assert repeat["sticky"] is True and repeat["contextual"] is False
    if anonymous["variant"]["id"] == "support":
        assert anonymous["variant"]["content"] == "Hi there, need help choosing?"


def test_preview_records_no_decision_and_no_impression(service: Service) -> None:
    from redis_state import keys

    service.put("/v1/messages/banner", slot())
    customer = service.customers[1]
    url = f"/v1/customers/{customer}/messages/banner"
    preview = service.get(url + "?preview=true").get_json()
    assert preview["decision_id"] is None and preview["sticky"] is False and preview["contextual"] is True
    assert "{" not in preview["variant"]["content"]
    assert service.redis.exists(keys.message_sticky(customer, "banner")) == 0
    assert not service.redis.hgetall(keys.message_stats("banner")), "no impression, no decision counted"
    assert not list(service.redis.scan_iter(match=keys.message_decision("banner", "*")))
    real = service.get(url).get_json()
    stats = service.redis.hgetall(keys.message_stats("banner"))
    again = service.get(url + "?preview=true").get_json()
    assert again["sticky"] is True and again["decision_id"] == real["decision_id"]
    assert service.redis.hgetall(keys.message_stats("banner")) == stats, "a sticky preview counts nothing"
    params = service.client.get("/openapi.json").get_json()["paths"][
        "/v1/customers/{customer_id}/messages/{slot}"]["get"]["parameters"]
    assert any(p["name"] == "preview" for p in params)


def test_preview_is_the_answer_of_the_real_call_and_records_nothing(service: Service) -> None:
    """Once the customer keeps a sticky variant, the preview is the real call's answer field for field; no
    preview (fresh or sticky) writes anything: stats, decisions, bandit state and sticky records unchanged."""
    service.put("/v1/messages/banner", slot())
    service.put("/v1/messages/flash", slot(sticky_days=0))
    customer = service.customers[2]

    def state() -> dict[bytes, Any]:
        return {key: service.redis.dump(key) for pattern in ("tailor:msg:*", "tailor:sticky:*")
                for key in service.redis.scan_iter(match=pattern)}

    before = state()
    for name in ("banner", "flash"):
        fresh = service.get(f"/v1/customers/{customer}/messages/{name}?preview=true").get_json()
        assert fresh["decision_id"] is None and fresh["sticky"] is False
    assert state() == before
    service.get(f"/v1/customers/{customer}/messages/banner")
    kept = state()
    preview = service.get(f"/v1/customers/{customer}/messages/banner?preview=true").get_json()
    assert state() == kept, "a sticky preview counts no impression"
    real = service.get(f"/v1/customers/{customer}/messages/banner").get_json()
    assert preview == real and real["sticky"] is True


def test_templates_render_customer_values(service: Service) -> None:
    service.put("/v1/messages/mail", {"variants": [
        {"id": "a", "content": "{top_item} | {recommended_item_id} | {journey_stage} | {country}"},
        {"id": "b", "content": "{top_item} | {recommended_item_id} | {journey_stage} | {country}"}],
        "sticky_days": 0})
    customer = service.customers[0]
    profile = service.get(f"/v1/customers/{customer}/profile").get_json()
    content = service.get(f"/v1/customers/{customer}/messages/mail").get_json()["variant"]["content"]
    top_item, recommended, stage, country = content.split(" | ")
    assert top_item in (profile["top_items"][0]["title"], profile["top_items"][0]["item_id"])
    assert recommended in service.items and recommended not in {i["item_id"] for i in profile["top_items"]}
    assert stage == profile["journey_stage"] and country == profile["country"]


def test_click_events_reward_once(service: Service) -> None:
    service.put("/v1/messages/banner", slot(sticky_days=0))
    customer = service.customers[1]
    answer = service.get(f"/v1/customers/{customer}/messages/banner").get_json()
    click = event(customer, answer["decision_id"])
    assert service.events([click, click]).get_json() == {"received": 2, "accepted": 1, "duplicates": 1,
                                                         "unattributed": 0}
    service.events([event(customer, answer["decision_id"])])  # another event id, same decision
    service.events([event(customer, answer["decision_id"], "conversion")])
    service.events([event("someone-else", answer["decision_id"], "conversion")])
    service.events([event(customer, "m-0123456789abcdef-banner")])
    report = service.get("/v1/messages/banner/report", "marketing").get_json()
    row = next(r for r in report["variants"] if r["id"] == answer["variant"]["id"])
    assert (row["decisions"], row["clicks"], row["conversions"], row["rewards"]) == (1, 1, 1, 1)
    assert row["click_rate"]["value"] == 1.0 and 0 < row["click_rate"]["low"] < 1
    assert report["totals"]["rewards"] == 1 and report["off_policy"]["decisions"] == 1
    stats = service.redis.hgetall(keys.message_stats("banner"))
    assert stats[b"rewards"] == b"1"


def test_concurrent_requests_record_every_decision(service: Service) -> None:
    service.put("/v1/messages/banner", slot(sticky_days=0))
    customers = (service.customers * 2)[:200]

    def request(customer: str) -> str:
        response = service.app.test_client().get(f"/v1/customers/{customer}/messages/banner",
                                                 headers=service.headers("read"))
        assert response.status_code == 200
        return response.get_json()["decision_id"]

    with ThreadPoolExecutor(32) as pool:
        decisions = list(pool.map(request, customers))
    assert len(set(decisions)) == 200
    report = service.get("/v1/messages/banner/report", "marketing").get_json()
    assert report["totals"]["decisions"] == 200 == sum(r["decisions"] for r in report["variants"])


def test_report_shape(service: Service) -> None:
    service.put("/v1/messages/banner", slot(sticky_days=0, exploration=0.5))
    for customer in service.customers[:20]:
        service.get(f"/v1/customers/{customer}/messages/banner")
    report = service.get("/v1/messages/banner/report", "marketing").get_json()
    assert [r["id"] for r in report["variants"]] == ["value", "quality", "support"]
    shares = report["policy"]
    assert shares["bandit_share"]["decisions"] + shares["uniform_share"]["decisions"] == 20
    assert set(report["off_policy"]) == {"decisions", "learned", "uniform", "lift"}
    from service.usecases.marketing import marketing

    counters = marketing(service.app.extensions["tailor"], service.app.extensions).counters()
    assert counters["messages"]["banner"]["decisions"] == 20 and counters["promotions"] == {}


def test_openapi_documents_the_endpoints(service: Service) -> None:
    paths = service.client.get("/openapi.json").get_json()["paths"]
    for path in ("/v1/messages/{slot}", "/v1/messages", "/v1/messages/{slot}/report",
                 "/v1/customers/{customer_id}/messages/{slot}"):
        assert path in paths


def test_redis_down_is_503_json_then_recovers(service: Service, redis_server: Any) -> None:
    service.put("/v1/messages/banner", slot(sticky_days=0))
    service.put("/v1/promotions/p", {"name": "P", "items": service.items[:1], "offer": {"text": "t"},
                                     "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2199-01-01T00:00:00Z",
                                     "status": "active"})
    customer = service.customers[0]
    assert service.get(f"/v1/customers/{customer}/messages/banner").status_code == 200
    redis_server.stop()
    try:
        for url, scope in ((f"/v1/customers/{customer}/messages/banner", "read"),
                           (f"/v1/customers/{customer}/promotions", "read"),
                           ("/v1/messages/banner/report", "marketing"), ("/v1/promotions", "marketing")):
            response = service.get(url, scope)
            assert response.status_code == 503, url
            assert response.get_json()["error"]["code"] == "redis_unavailable"
        assert service.put("/v1/messages/other", slot()).status_code == 503
    finally:
        redis_server.start()
    # the server came back (empty: no persistence); the app recovers by itself once its breaker lets a
    # request through again
    for _ in range(300):
        response = service.put("/v1/messages/banner", slot(sticky_days=0))
        if response.status_code != 503:
            break
        time.sleep(0.05)
    assert response.status_code == 201
    assert service.get(f"/v1/customers/{customer}/messages/banner").status_code == 200
