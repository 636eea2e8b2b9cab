"""The web console at ``/console``: a static single-page app for marketers and data scientists.

The page itself is public and holds no data: every figure it shows comes from the ``/v1`` API, called by
the browser with the key the user enters (kept in ``sessionStorage``), so the API's scopes apply as they
are (``marketing`` to read, ``admin`` to activate or roll back a model). The files ship in the package
(``service/static/console``): no build step and nothing fetched from the internet. A strict
Content-Security-Policy allows only the app's own scripts, styles and API.
"""

from __future__ import annotations

from pathlib import Path

import flask

CONSOLE_URL = "/console"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "console"

#: Only same-origin scripts, styles and API calls; no inline code, no frames, no forms posting elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def console_blueprint() -> flask.Blueprint:
    """``/console`` (the HTML shell) and ``/console/static/<file>`` (its scripts and styles).

    A plain Flask blueprint, not a flask-smorest one: these pages are not part of the API contract and
    stay out of the OpenAPI document.
    """
    blueprint = flask.Blueprint("console", __name__, static_folder=str(STATIC_DIR),
                                static_url_path=f"{CONSOLE_URL}/static")

    @blueprint.get(CONSOLE_URL, strict_slashes=False)
    def index() -> flask.Response:
        response = flask.send_from_directory(STATIC_DIR, "index.html", max_age=0)
        response.headers.update(SECURITY_HEADERS)
        return response

    @blueprint.after_request
    def harden(response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return blueprint
