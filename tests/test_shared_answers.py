"""Answers shared between processes through Redis, the worker's memo and customer cache change no answer:
every customer of the shipped sample gets exactly what full scoring gives, before and after an event."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import redis
from flask import Flask

from redis_state import keys
from service.infrastructure.answer_memo import SharedAnswers
from service.infrastructure.model_store import ServingState
from settings import Settings
from tests.service_helpers import RETAIL_CSV, ApiClient, Models, TrainedModel, event, train

pytest_plugins = ["tests.service_helpers"]

URL = "/v1/customers/{}/recommendations?n=10"


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The default algorithm (what `tailor train` serves), on the Online Retail sample."""
    return train(RETAIL_CSV, "online-retail", "hybrid", tmp_path_factory.mktemp("hybrid") / "model")


def _scorings(app: Flask) -> list[str]:
    """Record every customer this app scores (the engine's own scoring, called through)."""
    engine = app.extensions["tailor"].engine
    scored: list[str] = []
    compute = engine._customer_answer

    def counted(state, customer, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(customer.customer_id)
        return compute(state, customer, *args, **kwargs)

    engine._customer_answer = counted
    return scored


@pytest.mark.parametrize("which", ["hybrid", "item-knn"])
def test_every_customer_answers_as_full_scoring_before_and_after_an_event(
        which: str, request: pytest.FixtureRequest, models: Models, make_app: Callable[..., Flask],
        redis_client: redis.Redis) -> None:
    model: TrainedModel = request.getfixturevalue("hybrid") if which == "hybrid" else models.retail
    from training.publish import publish_model

    publish_model(redis_client, model.path)
    full = ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0", TAILOR_CUSTOMER_CACHE_SIZE="0"))
    first, second = ApiClient(make_app()), ApiClient(make_app())  # two processes, sharing answers via Redis
    scored_first, scored_second = _scorings(first.app), _scorings(second.app)
    customers = [str(c) for c in model.artifact.customer_ids]

    def check(phase: str) -> None:
        for customer in customers:
            expected = full.get(URL.format(customer)).get_json()
            assert first.get(URL.format(customer)).get_json() == expected, (phase, customer, "computed")
            assert second.get(URL.format(customer)).get_json() == expected, (phase, customer, "shared")
            assert first.get(URL.format(customer)).get_json() == expected, (phase, customer, "remembered")

    check("before")
    assert sorted(scored_first) == sorted(customers), "the first process scored each customer once"
    assert scored_second == [], "the second took every answer from Redis"
    assert len(list(redis_client.scan_iter(match=keys.customer_answers_pattern(model.version)))) == len(customers)

    before = {c: first.get(URL.format(c)).get_json()["items"][0]["item_id"] for c in customers}
    batch = [event(f"shared-{i}", c, item_id=before[c]) for i, c in enumerate(customers)]
    for start in range(0, len(batch), 100):
        assert first.post("/v1/events", json=batch[start:start + 100]).status_code == 200
    scored_first.clear()
    check("after a purchase by every customer")
    assert sorted(scored_first) == sorted(customers), "every purchase changed the data: every answer recomputed"
    assert scored_second == []


def test_shared_answer_names_depend_on_state_arguments_settings(retail: TrainedModel,
                                                                make_app: Callable[..., Flask]) -> None:
    """Another version, other inactive items, other arguments or other answer-shaping settings: another field."""
    state = make_app().extensions["tailor"].store.current()
    assert state is not None
    settings = Settings.load({})
    names = SharedAnswers(settings)
    key = ("customer", "c1", 10, False, (), None, None)
    field = names.field(state, key)
    assert field == SharedAnswers(settings).field(state, key), "the same in every process"
    assert names.field(state, (*key[:2], 5, *key[3:])) != field
    inactive = state.inactive[:0] if len(state.inactive) else np.asarray([0], dtype=np.int64)
    other_items = ServingState(state.model, inactive, frozenset(inactive.tolist()), state.overrides,
                               state.overrides_rev)
    assert names.field(other_items, key) != field
    assert SharedAnswers(Settings.load({"TAILOR_SESSION_MAX_ITEMS": "7"})).field(state, key) != field


def test_publish_warm_shares_every_customers_answer_before_any_request(
        hybrid: TrainedModel, make_app: Callable[..., Flask], redis_url: str, capsys: pytest.CaptureFixture) -> None:
    """``tailor publish --warm``: the API then scores nobody for a default request, and answers as full scoring."""
    from tailor.cli import main

    assert main(["publish", "--model", str(hybrid.path), "--redis-url", redis_url, "--warm"]) == 0
    customers = [str(c) for c in hybrid.artifact.customer_ids]
    assert f"warmed {len(customers):,} customers' answers" in capsys.readouterr().err
    full = ApiClient(make_app(TAILOR_ANSWER_CACHE_SIZE="0", TAILOR_CUSTOMER_CACHE_SIZE="0"))
    served = ApiClient(make_app())
    scored = _scorings(served.app)
    for customer in customers:
        assert served.get(f"/v1/customers/{customer}/recommendations").get_json() == \
            full.get(URL.format(customer)).get_json(), customer
    assert scored == [], "every default answer was shared by the warm-up"
    assert served.get(URL.format(customers[0]) + "&exclude_purchased=true").status_code == 200
    assert scored == [customers[0]], "other arguments are computed on request, as before"


def test_publish_warm_refuses_no_activate(hybrid: TrainedModel, redis_url: str,
                                          capsys: pytest.CaptureFixture) -> None:
    from tailor.cli import main

    assert main(["publish", "--model", str(hybrid.path), "--redis-url", redis_url, "--warm", "--no-activate"]) == 2
    assert "--warm" in capsys.readouterr().err


def test_publish_warm_n_warms_the_most_recent_buyers_first(
        hybrid: TrainedModel, make_app: Callable[..., Flask], redis_url: str, capsys: pytest.CaptureFixture) -> None:
    """``--warm 25``: the 25 customers with the latest purchases are shared, the others computed on request."""
    from scoring.artifact import customers_latest_first
    from tailor.cli import main

    assert main(["publish", "--model", str(hybrid.path), "--redis-url", redis_url, "--warm", "25"]) == 0
    assert "warmed 25 customers' answers" in capsys.readouterr().err
    history, ids = hybrid.artifact.history, [str(c) for c in hybrid.artifact.customer_ids]
    latest = {ids[row]: history.last_day[row].max() for row in range(len(ids)) if history.last_day[row].nnz}
    order = customers_latest_first(hybrid.path)
    assert sorted(order) == sorted(ids)
    assert [latest.get(c, -1.0) for c in order] == sorted((latest.get(c, -1.0) for c in ids), reverse=True)
    served = ApiClient(make_app())
    scored = _scorings(served.app)
    for customer in order[:25] + order[-5:]:
        assert served.get(URL.format(customer)).status_code == 200
    assert scored == order[-5:], "only the customers beyond the first 25 were scored"
    assert main(["publish", "--model", str(hybrid.path), "--redis-url", redis_url, "--warm", "-1"]) == 2
