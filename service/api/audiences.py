"""Audiences: the customers to target for items, a category, a promotion, a look-alike seed set or a re-order."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import flask
from werkzeug.datastructures import MIMEAccept

from service.api.audiences_schemas import AudienceBody, AudienceSchema
from service.api.framework import Blueprint, json_response
from service.domain.errors import NotAcceptable
from service.usecases.audiences import audiences
from service.usecases.marketing import marketing

blp = Blueprint("audiences", __name__, url_prefix="/v1", description="Audiences for campaigns")
CSV, JSON = "text/csv", "application/json"


def _quality(accept: MIMEAccept, media_type: str) -> tuple[float, bool]:
    """The quality ``accept`` gives ``media_type`` from its most specific match (the type itself with any
    parameters, such as ``text/csv; charset=utf-8``, then ``text/*``, then ``*/*``; 0 without one), and
    whether that match names the type itself. werkzeug's lookup ignores entries that carry parameters."""
    family = media_type.split("/", 1)[0] + "/*"
    found: dict[int, float] = {}
    for value, quality in accept:
        name = value.split(";", 1)[0].strip().lower()
        rank = 2 if name == media_type else 1 if name == family else 0 if name == "*/*" else -1
        if rank >= 0:
            found[rank] = max(found.get(rank, 0.0), float(quality))
    if not found:
        return 0.0, False
    best = max(found)
    return found[best], best == 2


def wants_csv(accept: MIMEAccept) -> bool:
    """Content negotiation of an audience: CSV when ``text/csv`` is named with a quality at least that of JSON
    (``text/csv, */*``), or when only CSV is acceptable (``text/*``); JSON without an ``Accept`` header, for
    ``*/*`` and whenever JSON is preferred; 406 when neither is acceptable."""
    if not accept.provided:
        return False
    csv_q, named = _quality(accept, CSV)
    json_q, _ = _quality(accept, JSON)
    if named and csv_q > 0 and csv_q >= json_q:
        return True
    if json_q > 0 or csv_q > 0:
        return json_q <= 0
    raise NotAcceptable(f"an audience is answered as {JSON} or {CSV}; the Accept header takes neither",
                        details={"headers": {"Accept": [f"accept {JSON} or {CSV}"]}})


def _csv_rows(answer: dict[str, Any]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("customer_id", "score", "reason"))
    customers = answer["customers"]
    for start in range(0, len(customers), 5_000):
        for row in customers[start:start + 5_000]:
            writer.writerow((row["customer_id"], row["score"], row["reason"]))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@blp.route("/audiences", methods=["POST"])
@blp.requires("marketing")
@blp.arguments(AudienceBody())
@blp.response(200, AudienceSchema)
@blp.doc(responses={200: {"content": {CSV: {"schema": {
    "type": "string", "description": "`customer_id,score,reason` rows, best first, after a header line"}}}}})
@blp.alt_response(406, response="NOT_ACCEPTABLE")
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def build_audience(body: dict[str, Any]) -> flask.Response:
    """The customers most likely to respond, ranked by predicted affinity.

    One target: `items` (the model's affinity for them), `categories` (summed over the category),
    `promotion_id` (its targets and eligibility) or `lookalike` (customers nearest to the seeds, seeds
    excluded); `due_for_reorder: true` (customers whose typical re-order interval of an item has passed) alone
    for any item, or with `items`, `categories` or `promotion_id` for theirs, never with `lookalike`. Any other
    combination is a 400 naming the conflicting fields. `size` (1..100000) and/or `min_score` bound the answer.
    `Accept: text/csv` (parameters such as `charset=utf-8` allowed) streams the same rows as CSV
    (`customer_id,score,reason`): CSV whenever `text/csv` is named with a quality at least that of
    `application/json` (`text/csv, */*`); JSON without an `Accept` header, for `*/*` alone or when JSON is
    preferred; 406 when the header takes neither.

    Customers are those published with the served version (at most 500,000 per process) and those who bought
    since its data: purchase events count (histories, orders, spend, journey stages, re-order intervals; a
    customer the model does not know joins) at most `TAILOR_AUDIENCE_REFRESH_S` (10 s) after they are
    accepted. The first request of a targeting scores them all (1,100-2,300 customers/s per worker thread on
    a 3,700-item catalogue); later ones reuse the scores and score again only the customers whose purchases
    changed. Item audiences above 200 million scores (customers x items) are a 400: use `tailor audience` for
    them.
    """
    app = flask.current_app
    as_csv = wants_csv(flask.request.accept_mimetypes)  # a 406 before any scoring
    use_case = audiences(marketing(app.extensions["tailor"], app.extensions), app.extensions)
    answer = use_case.build(body)
    if as_csv:
        return app.response_class(flask.stream_with_context(_csv_rows(answer)), mimetype=CSV, headers={
            "Content-Disposition": "attachment; filename=audience.csv", "X-Model-Version": answer["model_version"]})
    return json_response(answer)
