"""The web console's static files at /console, through the Flask test client: a public HTML shell with a strict
CSP, every asset with its type, and nothing a strict CSP would block (the browser tests: test_console.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from service.api.console import CONTENT_SECURITY_POLICY, STATIC_DIR

pytest_plugins = ["tests.service_helpers"]

#: The only absolute URL allowed in the console's files: the SVG namespace name (an identifier, not fetched).
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


@pytest.fixture
def console_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


def console_files() -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())


def test_console_shell_is_public_html_with_a_strict_csp(console_app: Flask) -> None:
    client = console_app.test_client()
    for url in ("/console", "/console/"):
        page = client.get(url)  # no key: the shell holds no data
        assert page.status_code == 200, url
        assert page.mimetype == "text/html"
        assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    assert '<script type="module" src="/console/static/app.js"></script>' in html
    assert 'for="key-input"' in html and 'for="customer-input"' in html, "inputs are labelled"
    csp = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"


def test_every_asset_loads_with_the_right_type(console_app: Flask) -> None:
    client = console_app.test_client()
    html = client.get("/console").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html)
    assert {"/console/static/app.js", "/console/static/console.css"} <= set(assets)
    modules = {f"/console/static/{name}" for path in STATIC_DIR.glob("*.js")
               for name in re.findall(r'from "\./([\w.-]+\.js)"', path.read_text())}
    assert modules, "app.js imports its modules"
    for url in {*assets, *modules}:
        answer = client.get(url)
        assert answer.status_code == 200, url
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert answer.mimetype == expected, (url, answer.mimetype)  # module scripts need a JavaScript type
    assert client.get("/console/static/missing.js").status_code == 404
    assert client.get("/console/static/../api/console.py").status_code == 404


def test_the_console_offers_the_api_journey_stages() -> None:
    """The eligibility form's stage boxes are the stages promotions accept (no stage a marketer cannot tick)."""
    from service.domain.profile import STAGES

    source = (STATIC_DIR / "eligibility.js").read_text()
    listed = re.search(r"export const STAGES = \[([^\]]*)\]", source)
    assert listed, "eligibility.js lists the stages"
    assert tuple(re.findall(r'"([^"]+)"', listed.group(1))) == STAGES


def test_no_external_urls_and_nothing_a_strict_csp_would_block() -> None:
    files = console_files()
    assert {p.name for p in files} >= {"index.html", "app.js", "api.js", "charts.js", "dom.js", "console.css"}
    for path in files:
        text = path.read_text()
        assert set(re.findall(r"https?://[^\s\"'`)]+", text)) <= ALLOWED_URLS, path.name
        assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?//""", text), f"protocol-relative URL in {path.name}"
        assert "@import" not in text, path.name
        if path.suffix == ".js":
            assert not re.search(r"\beval\(|new Function\(|\.innerHTML\b|setAttribute\(\s*\"style\"", text), path.name
            assert not re.search(r"import\(\s*[\"']https?:", text), path.name
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "no inline scripts"
    assert not re.search(r"<style\b|\sstyle=", html), "no inline styles"
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
