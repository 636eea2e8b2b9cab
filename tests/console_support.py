"""What the console's browser tests share: two published model versions, the real app behind a real HTTP
server, marketing data seeded through the API, and checks of what the browser shows (axe-core, charts)."""

from __future__ import annotations

import importlib.resources
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import requests
from werkzeug.serving import make_server

from service import create_app
from tests.service_helpers import API_KEYS, KEYS

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample" / "online_retail_sample.csv"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERIES_0_RGB = (0x1F, 0x5F, 0xBF)  # --series-0 in console.css: the first bar colour of every chart


@dataclass(frozen=True)
class Published:
    older: str  # popularity model, published first
    newer: str  # item-knn model, published second: the active one
    customer: str  # the customer with the most orders
    items: list[str]
    customers: list[str]


@pytest.fixture(scope="module")
def evaluated_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two versions trained (and evaluated against the baseline) by ``tailor train``, as in production."""
    from tailor.cli import main

    root = tmp_path_factory.mktemp("console-models")
    for algorithm in ("popular", "item-knn"):
        assert main(["-q", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail",
                     "--algorithm", algorithm, "--out", str(root / algorithm)]) == 0
    return root / "popular", root / "item-knn"


@pytest.fixture
def published(evaluated_models: tuple[Path, Path], redis_client: redis.Redis) -> Published:
    from scoring.artifact import read_artifact
    from training.publish import publish_model

    older, newer = evaluated_models
    publish_model(redis_client, older)
    publish_model(redis_client, newer)
    artifact = read_artifact(newer)
    busiest = str(artifact.customer_ids[int(artifact.customers.orders.argmax())])
    return Published(read_artifact(older).version, artifact.version, busiest,
                     [str(i) for i in np.load(newer / "item_ids.npy")],
                     [str(c) for c in np.load(newer / "customer_ids.npy")])


@pytest.fixture
def live_server(redis_url: str, published: Published) -> Iterator[str]:
    """The real app behind a real (threaded werkzeug) HTTP server on a free port."""
    app = create_app({"REDIS_URL": redis_url, "TAILOR_API_KEYS": API_KEYS, "TAILOR_PUBLIC_READ": "false",
                      "TAILOR_MODEL_POLL_S": "0.05", "TAILOR_REDIS_TIMEOUT_MS": "2000",
                      "TAILOR_REDIS_WRITE_TIMEOUT_MS": "5000"})
    app.extensions["tailor"].store.start()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    app.extensions["tailor"].close()


def seed_marketing_data(base: str, published: Published) -> None:
    """Two promotions and a message slot, served to 40 customers, some of whom click or convert."""
    session = requests.Session()

    def call(method: str, path: str, scope: str = "marketing", **kwargs: Any) -> Any:
        answer = session.request(method, base + path, headers={"Authorization": f"Bearer {KEYS[scope]}"},
                                 timeout=10, **kwargs)
        assert answer.status_code < 300, (path, answer.text)
        return answer.json()

    now = datetime.now(UTC)
    window = {"starts_at": (now - timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=30)).isoformat()}
    call("PUT", "/v1/promotions/spring-sale", json={
        "name": "Spring sale", "items": published.items[:5], "offer": {"text": "15% off", "percent_off": 15},
        "status": "active", "budget": {"impressions": 500}, **window})
    call("PUT", "/v1/promotions/free-shipping", json={
        "name": "Free shipping", "items": published.items[5:10], "offer": {"text": "Free shipping over 50"},
        "status": "active", "weight": 0.8, **window})
    for pid, name, days in (("winter-sale", "Winter sale", (-60, -30)), ("summer-sale", "Summer sale", (30, 60))):
        call("PUT", f"/v1/promotions/{pid}", json={
            "name": name, "items": published.items[:5], "offer": {"text": "10% off"}, "status": "active",
            "starts_at": (now + timedelta(days=days[0])).isoformat(),
            "ends_at": (now + timedelta(days=days[1])).isoformat()})
    call("PUT", "/v1/messages/homepage-banner", json={"exploration": 0.2, "sticky_days": 0, "variants": [
        {"id": "value", "content": "Save on {top_category|our best sellers}", "tone": "value"},
        {"id": "quality", "content": "Hand-picked for you", "tone": "quality"},
        {"id": "urgency", "content": "Only this week!", "tone": "urgency"}]})
    events = []
    for n, customer in enumerate(published.customers[:40]):
        decisions = [p["decision_id"] for p in call("GET", f"/v1/customers/{customer}/promotions?n=2", "read")
                     ["promotions"]]
        decisions.append(call("GET", f"/v1/customers/{customer}/messages/homepage-banner", "read")["decision_id"])
        for k, decision in enumerate(decisions):
            kind = "click" if (n + k) % 3 == 0 else "conversion" if (n + k) % 7 == 0 else None
            if kind:
                events.append({"event_id": f"e-{n}-{k}", "customer_id": customer, "type": kind,
                               "timestamp": now.isoformat(), "decision_id": decision})
    call("POST", "/v1/events", "read", json={"events": events})


def require_browser() -> Any:
    """The Playwright sync API, or skip with what to install."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]' (no browser download)")
    if not CHROMIUM.exists():
        pytest.skip(f"chromium not found at {CHROMIUM}: apt-get install chromium")
    return sync_api


def assert_accessible(page: Any, where: str) -> None:
    """axe-core finds no violation (WCAG 2.x A/AA and best practices) in the page as it is now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        source = importlib.resources.files("axe_playwright_python").joinpath("axe.min.js").read_text()
        page.evaluate(source)  # through the DevTools protocol: the console's CSP does not apply to it
    violations = page.evaluate("""() => axe.run(document, {resultTypes: ["violations"]}).then((r) =>
        r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target).join(" | ")}`))""")
    assert not violations, f"axe-core on {where}: " + "\n".join(violations)


def require_axe() -> None:
    pytest.importorskip("axe_playwright_python", reason="axe-core is not installed: pip install -e '.[dev]'")


def marketing_get(base: str, path: str) -> Any:
    answer = requests.get(base + path, headers={"Authorization": f"Bearer {KEYS['marketing']}"}, timeout=10)
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


def impressions_counted(base: str) -> tuple[int, int]:
    """Impressions of every promotion and of every message variant, as the reports count them."""
    promotions = marketing_get(base, "/v1/promotions")["promotions"]
    slots = marketing_get(base, "/v1/messages")["slots"]
    return (sum(marketing_get(base, f"/v1/promotions/{p['promotion_id']}/report")["impressions"] for p in promotions),
            sum(v["impressions"] for s in slots
                for v in marketing_get(base, f"/v1/messages/{s['slot']}/report")["variants"]))


def painted_bars(page: Any, scope: str) -> int:
    """SVG bars inside ``scope`` that the browser laid out with a non-zero size."""
    return page.evaluate("""(scope) => [...document.querySelectorAll(`${scope} svg.chart-svg rect.bar`)]
        .filter((bar) => { const box = bar.getBoundingClientRect(); return box.width > 0 && box.height > 0; })
        .length""", scope)


def assert_chart_pixels(png: bytes) -> None:
    """The chart's screenshot is not blank: many non-white pixels, a good part of them in the bar colour."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(image, dtype=np.int16).reshape(-1, 3)
    ink = np.abs(pixels - 255).sum(axis=1) > 60
    bar = np.abs(pixels - np.array(SERIES_0_RGB)).sum(axis=1) < 40
    assert ink.mean() > 0.02, f"only {ink.mean():.1%} of the chart is drawn"
    assert bar.sum() > 150, f"only {bar.sum()} pixels in the bar colour"


@pytest.mark.slow

def active_version(base: str) -> str:
    answer = requests.get(f"{base}/v1/models/active", headers={"Authorization": f"Bearer {KEYS['read']}"},
                          timeout=10)
    return answer.json()["version"]
