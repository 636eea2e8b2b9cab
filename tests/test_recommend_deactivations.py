"""`tailor recommend --redis-url`: the batch export leaves out the items the service has deactivated (PATCH
/v1/items/{id}), as the API's answers do; without the flag it reads the model directory alone."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scoring.artifact import read_artifact
from tailor.cli import main

if TYPE_CHECKING:
    from tests.marketing_support import Service

pytest_plugins = ["tests.marketing_support"]


def export(model: Path, customers: Path, out: Path, n: int, *extra: str) -> dict[str, list[tuple[str, float]]]:
    """Each customer's (item, score) list, in rank order."""
    assert main(["-q", "recommend", "--model", str(model), "--customers", str(customers), "--n", str(n),
                 "--output", str(out), *extra]) == 0
    lists: dict[str, list[tuple[str, float]]] = {}
    with open(out, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lists.setdefault(row["customer_id"], []).append((row["item_id"], float(row["score"])))
    return lists


def assert_same_ranking(got: list[tuple[str, float]], expected: list[tuple[str, float]], label: str) -> None:
    """Equal scores rank by rank, and the same items at each score, except in the last group of tied scores,
    which the list's length may cut anywhere."""
    assert [score for _, score in got] == [score for _, score in expected], label
    cut = expected[-1][1] if expected else None

    def groups(ranked: list[tuple[str, float]]) -> dict[float, set[str]]:
        return {score: {i for i, s in ranked if s == score} for _, score in ranked if score != cut}

    assert groups(got) == groups(expected), label


@pytest.mark.parametrize("exclude", [[], ["--exclude-purchased"]])
def test_deactivated_items_are_in_no_list(service: Service, sample_model: Path, tmp_path: Path, redis_url: str,
                                          exclude: list[str]) -> None:
    artifact = read_artifact(sample_model)
    customers = tmp_path / "ids.txt"
    wanted = [str(c) for c in artifact.customer_ids[:30]] + ["nobody"]
    customers.write_text("\n".join(wanted) + "\n")
    before = export(sample_model, customers, tmp_path / "a.csv", 6, *exclude)
    # the item in most of the top-5 lists, and the most popular one (the unknown customer's fallback)
    counts = Counter(item for ranked in before.values() for item, _ in ranked[:5])
    victims = {counts.most_common(1)[0][0], before["nobody"][0][0]}
    for item in victims:
        answer = service.client.patch(f"/v1/items/{item}", json={"active": False}, headers=service.headers("admin"))
        assert answer.status_code == 200, answer.get_data(as_text=True)
    after = export(sample_model, customers, tmp_path / "b.csv", 5, *exclude, "--redis-url", redis_url)
    assert list(after) == wanted
    for customer in wanted:  # the same ranking with the deactivated items taken out (tied scores in any order)
        assert not {item for item, _ in after[customer]} & victims, customer
        assert_same_ranking(after[customer], [(i, s) for i, s in before[customer] if i not in victims][:5], customer)
    assert sum(len({item for item, _ in ranked[:5]} & victims) for ranked in before.values()) > 1
    unchanged = export(sample_model, customers, tmp_path / "c.csv", 5, *exclude)  # no --redis-url: no Redis read
    for customer in wanted:
        assert_same_ranking(unchanged[customer], before[customer][:5], customer)
    assert any({item for item, _ in ranked} & victims for ranked in unchanged.values())

def test_unreachable_redis_is_one_line(sample_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers = tmp_path / "ids.txt"
    customers.write_text("nobody\n")
    assert main(["recommend", "--model", str(sample_model), "--customers", str(customers), "--output", "-",
                 "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tailor: error: ") and err.count("\n") == 1 and "127.0.0.1:1" in err
