"""Audiences: the customers to target for items, a category, a promotion, a look-alike seed set or a re-order."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import flask

from service.api.audiences_schemas import AudienceBody, AudienceSchema
from service.api.framework import Blueprint, json_response
from service.usecases.audiences import audiences
from service.usecases.marketing import marketing

blp = Blueprint("audiences", __name__, url_prefix="/v1", description="Audiences for campaigns")


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
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def build_audience(body: dict[str, Any]) -> flask.Response:
    """The customers most likely to respond, ranked by predicted affinity.

    Exactly one targeting field, or a 400 naming the conflict: `items` (the model's affinity for them),
    `categories` (summed over the category), `promotion_id` (its targets and eligibility), `lookalike`
    (customers nearest to the seeds, seeds excluded), `due_for_reorder` (customers whose typical re-order
    interval of an item has passed). `size` (1..100000) and/or `min_score` bound the answer.
    `Accept: text/csv` streams the same rows as CSV (`customer_id,score,reason`).

    Customers are those published with the served version (at most 500,000 per process); the first request
    of a targeting scores them all (1,100-2,300 customers/s per worker thread on a 3,700-item catalogue),
    later ones reuse the scores until the version changes. Item audiences above 200 million scores
    (customers x items) are a 400: use `tailor audience` for them.
    """
    app = flask.current_app
    use_case = audiences(marketing(app.extensions["tailor"], app.extensions), app.extensions)
    answer = use_case.build(body)
    accept = flask.request.accept_mimetypes
    if accept["text/csv"] > accept["application/json"]:
        return app.response_class(flask.stream_with_context(_csv_rows(answer)), mimetype="text/csv", headers={
            "Content-Disposition": "attachment; filename=audience.csv", "X-Model-Version": answer["model_version"]})
    return json_response(answer)
