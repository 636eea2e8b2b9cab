"""Promotions through the real app (Flask test client) against a real Redis with a published model."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from redis_state import keys

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]

NOW = datetime.now(UTC)


def body(service: Service, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Spring sale", "items": service.items[:3], "offer": {"text": "15% off", "percent_off": 15},
        "starts_at": (NOW - timedelta(days=1)).isoformat(), "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "status": "active",
    }
    doc.update(overrides)
    return doc


def assert_error(response: Any, status: int, *path: str) -> dict[str, Any]:
    """A JSON error envelope with ``status`` whose details name the field at ``path``."""
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    node = error["details"]
    for part in path:
        assert isinstance(node, dict) and part in node, (path, error)
        node = node[part]
    return error


def test_crud(service: Service) -> None:
    created = service.put("/v1/promotions/spring", body(service))
    assert created.status_code == 201
    doc = created.get_json()
    assert doc["promotion_id"] == "spring" and doc["weight"] == 1 and doc["status"] == "active"
    replaced = service.put("/v1/promotions/spring", {**doc, "weight": 2})  # read-only fields sent back
    assert replaced.status_code == 200 and replaced.get_json()["weight"] == 2
    assert replaced.get_json()["created_at"] == doc["created_at"]
    assert service.get("/v1/promotions/spring", "marketing").get_json()["weight"] == 2
    listed = service.get("/v1/promotions", "marketing").get_json()["promotions"]
    assert [p["promotion_id"] for p in listed] == ["spring"]

    assert service.delete("/v1/promotions/spring").status_code == 204
    assert_error(service.get("/v1/promotions/spring", "marketing"), 404)
    report = service.get("/v1/promotions/spring/report", "marketing")
    assert report.status_code == 200 and report.get_json()["status"] == "deleted"
    assert service.delete("/v1/promotions/spring?purge=true").status_code == 204
    assert_error(service.get("/v1/promotions/spring/report", "marketing"), 404)
    assert_error(service.delete("/v1/promotions/spring"), 404)


def test_scopes(service: Service) -> None:
    assert_error(service.put("/v1/promotions/p", body(service), scope="read"), 403)
    assert service.client.get("/v1/promotions").status_code == 401
    assert service.put("/v1/promotions/p", body(service), scope="admin").status_code == 201
    customer = service.customers[0]
    assert service.get(f"/v1/customers/{customer}/promotions", "marketing").status_code == 200
    assert service.client.get(f"/v1/customers/{customer}/promotions").status_code == 401
    assert_error(service.get("/v1/promotions/p/report", "read"), 403)


@pytest.mark.parametrize(("overrides", "path"), [
    ({"ends_at": (NOW - timedelta(days=5)).isoformat()}, ("json", "ends_at")),
    ({"items": ["NO-SUCH-ITEM"]}, ("json", "items")),
    ({"cap": {"impressions": -1, "days": 7}}, ("json", "cap", "impressions")),
    ({"cap": {"impressions": 2, "days": -3}}, ("json", "cap", "days")),
    ({"budget": {"redemptions": -1}}, ("json", "budget", "redemptions")),
    ({"categories": ["Garden"]}, ("json", "categories")),
    ({"offer": {"text": "x", "percent_off": 10, "amount_off": 2}}, ("json", "offer")),
    ({"offer": {"text": "x", "percent_off": 101}}, ("json", "offer", "percent_off")),
    ({"weight": -1}, ("json", "weight")),
    ({"weight": "heavy"}, ("json", "weight")),
    ({"status": "live"}, ("json", "status")),
    ({"starts_at": "yesterday"}, ("json", "starts_at")),
    ({"starts_at": "0001-01-01T00:00:00+14:00"}, ("json", "starts_at")),
    ({"eligibility": {"journey_stages": ["vip"]}}, ("json", "eligibility", "journey_stages")),
    ({"eligibility": {"min_orders": 1.5}}, ("json", "eligibility", "min_orders")),
    ({"surprise": 1}, ("json", "surprise")),
    ({"name": None}, ("json", "name")),
    ({"items": "85123A"}, ("json", "items")),
])
def test_invalid_definitions_are_400_naming_the_field(service: Service, overrides: dict[str, Any],
                                                      path: tuple[str, ...]) -> None:
    error = assert_error(service.put("/v1/promotions/p1", body(service, **overrides)), 400, *path)
    assert error["code"] == "invalid_input"
    assert service.get("/v1/promotions", "marketing").get_json()["promotions"] == []


@pytest.mark.parametrize("promotion_id", ["a b", "x{y}", "a:b", "-x", "x" * 65])
def test_invalid_promotion_id(service: Service, promotion_id: str) -> None:
    assert_error(service.put(f"/v1/promotions/{promotion_id}", body(service)), 400, "path", "promotion_id")


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b"42", b'"text"', b"{", b'{"name": 1e999}',
                                 b'{"offer": []}', b"\xff\xfe", b'{"items": [{"a": 1}]}', b'{"cap": "x"}',
                                 b'{"eligibility": {"countries": [1, 2]}}', b'{"budget": {"impressions": true}}',
                                 b'{"offer": {"text": "' + b"a" * 600 + b'"}}'])
def test_garbage_bodies_never_5xx(service: Service, raw: bytes) -> None:
    response = service.client.put("/v1/promotions/g", data=raw, content_type="application/json",
                                  headers=service.headers("marketing"))
    assert 400 <= response.status_code < 500
    assert "error" in response.get_json()


def test_garbage_queries_never_5xx(service: Service) -> None:
    customer = service.customers[0]
    for query in ("n=0", "n=21", "n=abc", "n=", "n=1e9", "n=3&n=4"):
        response = service.get(f"/v1/customers/{customer}/promotions?{query}")
        assert response.status_code in (200, 400), query
        assert response.is_json
    assert_error(service.get("/v1/customers/%00bad/promotions"), 400)
    assert service.delete("/v1/promotions/zzz?purge=maybe").status_code == 400


def test_customer_promotions_ranked_with_reasons(service: Service) -> None:
    customer = service.customers[0]
    service.put("/v1/promotions/low", body(service, items=service.items[10:12], weight=1))
    service.put("/v1/promotions/high", body(service, items=service.items[10:12], weight=5))
    service.put("/v1/promotions/draft", body(service, status="draft"))
    service.put("/v1/promotions/later", body(service, starts_at=(NOW + timedelta(days=2)).isoformat(),
                                              ends_at=(NOW + timedelta(days=3)).isoformat()))
    answer = service.get(f"/v1/customers/{customer}/promotions?n=3").get_json()
    assert answer["source"] == "personalized" and answer["customer_id"] == customer
    assert [p["promotion_id"] for p in answer["promotions"]] == ["high", "low"]
    first = answer["promotions"][0]
    assert first["score"] == pytest.approx(5 * answer["promotions"][1]["score"], rel=1e-3)
    assert "top" in first["reason"] and first["decision_id"].startswith("p-")
    assert first["offer"] == {"text": "15% off", "percent_off": 15.0}

    unknown = service.get("/v1/customers/nobody-knows-me/promotions").get_json()
    assert unknown["source"] == "popular" and unknown["journey_stage"] == "new"
    assert {p["promotion_id"] for p in unknown["promotions"]} == {"high", "low"}


def test_a_site_wide_promotion_is_offered_without_target_items(service: Service) -> None:
    created = service.put("/v1/promotions/everything", body(service, items=[], name="10% off everything"))
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["items"] == [] and created.get_json()["categories"] == []
    for customer in (service.customers[0], "nobody-knows-me"):
        (offered,) = service.get(f"/v1/customers/{customer}/promotions").get_json()["promotions"]
        assert offered["promotion_id"] == "everything" and offered["reason"].startswith("site-wide offer")


def test_preview_counts_no_impression_and_uses_no_cap_or_budget(service: Service) -> None:
    service.put("/v1/promotions/capped", body(service, cap={"impressions": 1, "days": 1},
                                               budget={"impressions": 5}))
    customer = service.customers[0]
    for _ in range(3):
        (shown,) = service.get(f"/v1/customers/{customer}/promotions?preview=true").get_json()["promotions"]
        assert shown["promotion_id"] == "capped" and shown["decision_id"] is None
    report = service.get("/v1/promotions/capped/report", "marketing").get_json()
    assert report["impressions"] == 0 and report["budget"]["impressions_left"] == 5
    assert list(service.redis.scan_iter(match=keys.promotion_pattern("capped"))) == [], "nothing written"
    (served,) = service.get(f"/v1/customers/{customer}/promotions").get_json()["promotions"]
    assert served["decision_id"].startswith("p-"), "the cap was not used by the previews"
    assert service.get(f"/v1/customers/{customer}/promotions").get_json()["promotions"] == []
    spec = service.client.get("/openapi.json").get_json()
    params = spec["paths"]["/v1/customers/{customer_id}/promotions"]["get"]["parameters"]
    assert any(p["name"] == "preview" and "no impression" in p["description"] for p in params)


def test_preview_answers_exactly_what_the_real_call_would(service: Service) -> None:
    """A promotion whose frequency cap is spent for the customer is left out of the preview as it is of the
    real answer; the next candidate takes its place in both; a preview never uses the cap or counts."""
    service.put("/v1/promotions/capped", body(service, cap={"impressions": 1, "days": 7}, weight=3))
    service.put("/v1/promotions/other", body(service, weight=1))
    customer = service.customers[0]
    url = f"/v1/customers/{customer}/promotions?n=1"

    def ids(answer: dict[str, Any]) -> list[str]:
        return [p["promotion_id"] for p in answer["promotions"]]

    def state() -> dict[bytes, Any]:
        return {key: (service.redis.type(key), service.redis.dump(key))
                for key in service.redis.scan_iter(match="tailor:promo:*")}

    before = state()
    previews = [service.get(url + "&preview=true").get_json() for _ in range(3)]
    assert all(ids(p) == ["capped"] and p["promotions"][0]["decision_id"] is None for p in previews)
    assert state() == before, "a preview wrote nothing"
    served = service.get(url).get_json()
    assert ids(served) == ["capped"] and served["promotions"][0]["decision_id"].startswith("p-")
    spent = state()
    preview = service.get(url + "&preview=true").get_json()
    assert ids(preview) == ["other"] and preview["promotions"][0]["decision_id"] is None
    assert state() == spent, "the preview of a spent cap wrote nothing"
    real = service.get(url).get_json()
    assert ids(real) == ids(preview) == ["other"]
    strip = [{k: v for k, v in p.items() if k != "decision_id"} for p in preview["promotions"]]
    assert strip == [{k: v for k, v in p.items() if k != "decision_id"} for p in real["promotions"]]
    report = service.get("/v1/promotions/capped/report", "marketing").get_json()
    assert report["impressions"] == 1
    service.put("/v1/promotions/budget", body(service, budget={"impressions": 1}, weight=5))
    assert ids(service.get(url).get_json()) == ["budget"]  # its only impression, to the same customer
    someone_else = f"/v1/customers/{service.customers[1]}/promotions?n=1"
    assert ids(service.get(someone_else + "&preview=true").get_json()) == ids(service.get(someone_else).get_json())
    assert "budget" not in ids(service.get(someone_else + "&preview=true").get_json())


def test_eligibility_through_the_api(service: Service) -> None:
    service.put("/v1/promotions/welcome", body(service, eligibility={"journey_stages": ["new"]}))
    service.put("/v1/promotions/vip", body(service, eligibility={"customers": [service.customers[1]]}))
    assert [p["promotion_id"] for p in service.get("/v1/customers/newbie/promotions").get_json()["promotions"]] \
        == ["welcome"]
    vip = service.get(f"/v1/customers/{service.customers[1]}/promotions").get_json()["promotions"]
    assert [p["promotion_id"] for p in vip] == ["vip"]


def test_cap_holds_under_200_concurrent_requests(service: Service) -> None:
    service.put("/v1/promotions/capped", body(service, cap={"impressions": 2, "days": 1}))
    customer = service.customers[2]

    def request(_: int) -> int:
        response = service.app.test_client().get(f"/v1/customers/{customer}/promotions",
                                                 headers=service.headers("read"))
        assert response.status_code == 200
        return len(response.get_json()["promotions"])

    with ThreadPoolExecutor(32) as pool:
        served = sum(pool.map(request, range(200)))
    assert served == 2
    assert service.redis.hget(keys.promotion_stats("capped"), "impressions") == b"2"


def test_budget_holds_under_200_concurrent_requests(service: Service) -> None:
    service.put("/v1/promotions/budget", body(service, budget={"impressions": 41}))
    customers = (service.customers * 2)[:200]

    def request(customer: str) -> int:
        response = service.app.test_client().get(f"/v1/customers/{customer}/promotions",
                                                 headers=service.headers("read"))
        assert response.status_code == 200
        return len(response.get_json()["promotions"])

    with ThreadPoolExecutor(32) as pool:
        served = sum(pool.map(request, customers))
    assert served == 41
    report = service.get("/v1/promotions/budget/report", "marketing").get_json()
    assert report["impressions"] == 41 and report["budget"]["impressions_left"] == 0


def test_conversion_event_counts_one_redemption(service: Service) -> None:
    service.put("/v1/promotions/r", body(service, budget={"redemptions": 1}))
    customer = service.customers[3]
    decision = service.get(f"/v1/customers/{customer}/promotions").get_json()["promotions"][0]["decision_id"]
    event = {"event_id": str(uuid.uuid4()), "customer_id": customer, "type": "conversion",
             "timestamp": NOW.isoformat(), "decision_id": decision}
    assert service.events([event]).status_code == 200
    assert service.events([event]).get_json()["duplicates"] == 1
    assert service.events([{**event, "event_id": str(uuid.uuid4())}]).status_code == 200  # same decision
    click = {**event, "event_id": str(uuid.uuid4()), "type": "click"}
    assert service.events([click]).status_code == 200
    report = service.get("/v1/promotions/r/report", "marketing").get_json()
    assert (report["impressions"], report["clicks"], report["conversions"]) == (1, 1, 1)
    assert report["conversion_rate"]["value"] == 1.0
    # the redemption budget is spent: nobody is offered the promotion any more
    assert service.get(f"/v1/customers/{service.customers[4]}/promotions").get_json()["promotions"] == []


def test_openapi_documents_the_endpoints(service: Service) -> None:
    spec = service.client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in ("/v1/promotions/{promotion_id}", "/v1/promotions", "/v1/promotions/{promotion_id}/report",
                 "/v1/customers/{customer_id}/promotions"):
        assert path in paths
    assert set(paths["/v1/promotions/{promotion_id}"]) >= {"put", "get", "delete"}
