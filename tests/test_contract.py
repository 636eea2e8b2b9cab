"""The contract is exact (issue 12.5): schemathesis against real gunicorn finds no difference between the
OpenAPI document (GET /openapi.json) and what the server does - every operation, every check, with a key of
each scope, a fixed seed, bounded so that it stays around a minute and a half in CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_helpers import KEYS, ROOT, Models, served_api

pytest_plugins = ["tests.service_helpers"]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = ROOT / "tests" / "schemathesis.toml"
SEED = 20261130
#: Examples per operation and scope in CI (the longer local run: docs/BENCHMARKS.md section 7).
MAX_EXAMPLES = int(os.environ.get("TAILOR_CONTRACT_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def server(models: Models, redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_api(redis_server.url, models.retail.path, tmp_path_factory.mktemp("contract") / "gunicorn.log",
                    workers=2, TAILOR_LOG_LEVEL="error", TAILOR_REDIS_TIMEOUT_MS="2000",
                    TAILOR_REDIS_WRITE_TIMEOUT_MS="5000") as base:
        yield base


def run_schemathesis(base: str, key: str, max_examples: int, seed: int, report: Path) -> tuple[int, str]:
    """One schemathesis run. One worker: with two, hypothesis' lambda descriptions (``ast.parse``) running in
    threads at once occasionally died with CPython 3.11's "AST constructor recursion depth mismatch"."""
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{base}/openapi.json", "--checks", "all",
               "--seed", str(seed), "--max-examples", str(max_examples), "--suppress-health-check", "all",
               "--warnings", "off", "--workers", "1", "--report", "junit", "--report-junit-path", str(report),
               "-H", f"Authorization: Bearer {key}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["read", "marketing", "admin"])
def test_schemathesis_finds_no_difference(server: str, scope: str, tmp_path: Path) -> None:
    code, output = run_schemathesis(server, KEYS[scope], MAX_EXAMPLES, SEED, tmp_path / "junit.xml")
    found = re.findall(r"\d+ generated[^\n]*|Failures:[^=]*", output)
    print(f"\nschemathesis scope={scope} examples={MAX_EXAMPLES}:", *found)
    summary = output[output.find("FAILURES"):] if "FAILURES" in output else output[-3000:]
    assert "Tested: 26" in output or re.search(r"Tested: \d+", output), output[-3000:]
    assert code == 0, output[-6000:] if "FAILURES" not in output else summary
    assert not re.search(r"\[5\d\d\]", output), re.findall(r".{200}\[5\d\d\].{300}", output, re.S)[:2]
    assert re.search(r"\d+ generated", output), summary


def test_the_openapi_document_states_what_the_server_checks(api) -> None:
    spec = api.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    quantity = schemas["Event"]["properties"]["quantity"]
    assert quantity["minimum"] == 0 and quantity["exclusiveMinimum"] is True
    offer = schemas["Offer"]["properties"]
    assert offer["percent_off"]["exclusiveMinimum"] is True and offer["amount_off"]["exclusiveMinimum"] is True
    pattern = re.compile(schemas["Event"]["properties"]["event_id"]["pattern"])
    assert pattern.search("e-1") and not pattern.search("e\x01") and not pattern.search("   ")
    assert "unique" in schemas["SlotBody"]["properties"]["variants"]["description"]
    profile = spec["paths"]["/v1/customers/{customer_id}/profile"]
    parameters = profile.get("parameters", []) + profile["get"].get("parameters", [])
    assert any(p["name"] == "customer_id" and "pattern" in p["schema"] for p in parameters)


@pytest.mark.parametrize("body", [{"active": "yes"}, {"active": 1}, {"active": "false"}, {"active": None}])
def test_a_schema_violating_item_patch_is_refused(body, make_app, retail) -> None:
    from tests.service_helpers import ApiClient, assert_error

    admin = ApiClient(make_app(), key=KEYS["admin"])
    item = retail.popular_items()[0]
    assert_error(admin.patch(f"/v1/items/{item}", json=body), 400, "invalid_input")
    assert admin.patch(f"/v1/items/{item}", json={"active": False}).status_code == 200
