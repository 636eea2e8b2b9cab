"""The `tailor` command line: every subcommand, its flags and their help (``build_parser``)."""

from __future__ import annotations

import argparse
from typing import Any


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from training.data import FORMATS

    g = p.add_argument_group("purchase log")
    g.add_argument("--data", required=True, metavar="FILE", help="CSV, gzip-compressed CSV or Parquet file")
    g.add_argument("--format", default="generic", metavar="FORMAT",
                   help=f"input layout: {', '.join(FORMATS)} (default: generic)")
    for name, default in (("customer", "customer_id"), ("item", "item_id"), ("time", "timestamp"),
                          ("quantity", "quantity"), ("price", "price"), ("title", "title"),
                          ("category", "category"), ("country", "country")):
        g.add_argument(f"--{name}-col", default=default, metavar="NAME",
                       help=f"generic format: column holding the {name} (default: {default})")
    g.add_argument("--time-format", metavar="FMT",
                   help="how the time column is written: a strftime pattern (e.g. %%d-%%m-%%Y, '%%m/%%d/%%Y %%H:%%M'), "
                        "epoch (seconds since 1970 UTC) or epoch-ms (default: ISO 8601; d/m/Y vs m/d/Y is "
                        "detected when the dates tell)")
    g.add_argument("--basket-col", metavar="NAME",
                   help="generic format: column holding the invoice / order id (default: none, a basket is one "
                        "customer's purchases of one calendar day)")
    g.add_argument("--segment-col", action="append", default=[], metavar="NAME",
                   help="column holding a customer segment (age group, area ...), repeatable: popular lists per "
                        "segment value and the segment in the customer profile")
    g.add_argument("--until", metavar="YYYY-MM-DD[THH:MM]", help="use only events strictly before this time")
    g.add_argument("--max-bad-rows", type=float, default=0.01, metavar="FRACTION",
                   help="stop when more than this share of rows is unparseable (default: 0.01)")
    g.add_argument("--events-from", metavar="REDIS_URL",
                   help="also read purchases that the service received as events (the feedback loop)")


def hyperparameter_flags() -> dict[str, list[tuple[str, Any]]]:
    """Every hyper-parameter name -> [(algorithm, Param)], so one flag serves all algorithms that share it."""
    from scoring.models import HYPERPARAMETERS

    specs: dict[str, list[tuple[str, Any]]] = {}
    for algorithm, params in HYPERPARAMETERS.items():
        for name, param in params.items():
            specs.setdefault(name, []).append((algorithm, param))
    return specs


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from scoring.models import ALGORITHMS, DEFAULT_ALGORITHM
    from training.tuning import DEFAULT_BUDGET_S

    g = p.add_argument_group("model (each flag applies to the algorithms named in its help)")
    g.add_argument("--algorithm", default=None, choices=sorted(ALGORITHMS), metavar="ALGORITHM",
                   help=f"force a recommender, one of: {', '.join(sorted(ALGORITHMS))} (default: chosen with its "
                        f"settings on the shop's own validation folds, see --tune-budget; model flags without "
                        f"--algorithm apply to {DEFAULT_ALGORITHM})")
    g.add_argument("--tune-budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help=f"wall time the default may spend choosing the algorithm and its settings on validation "
                        f"folds that end before the evaluation holdout; the search is stopped when it is spent "
                        f"(default: {DEFAULT_BUDGET_S:g}; 0 = no search: "
                        f"{DEFAULT_ALGORITHM} with its defaults)")
    for name, owners in sorted(hyperparameter_flags().items()):
        param = owners[0][1]
        defaults = ", ".join(f"{alg}: {prm.default}" for alg, prm in owners)
        allowed = list(dict.fromkeys(str(c) for _, prm in owners for c in (prm.choices or ())))
        one_of = f"; one of: {', '.join(allowed)}" if allowed else ""
        by_help: dict[str, list[str]] = {}
        for alg, prm in owners:
            by_help.setdefault(prm.help, []).append(alg)
        meaning = param.help if len(by_help) == 1 else "; ".join(
            f"{', '.join(algs)}: {text}" for text, algs in by_help.items())  # one meaning per algorithm group
        g.add_argument(param.flag, dest=f"hp_{name}", default=None, metavar=param.type.__name__.upper(),
                       help=f"{meaning}{one_of} (default {defaults})")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--holdout-days", type=float, default=30.0, metavar="DAYS",
                   help="hold out the last DAYS of the log (default: 30)")
    g.add_argument("--json", action="store_true", help="print the results as JSON on stdout")


def _add_engine_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--engine", default="local", choices=("local", "spark"),
                   help=f"local: this process (default); spark: {what} on Apache Spark (pip install 'tailor[spark]', "
                        "a Java 17 runtime)")
    g.add_argument("--spark-master", default="local[*]", metavar="URL",
                   help="Spark master with --engine spark: local[*] (default), local[N], spark://HOST:7077, yarn, ...")


def _add_redis_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=None, metavar="URL",
                   help="Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor", description="Tailor: personalization for online shops.")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    # --quiet is accepted after the command too; SUPPRESS keeps an absent flag from resetting the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_command  # type: ignore[method-assign]

    train = sub.add_parser("train", help="train (and evaluate) a model from a purchase log")
    _add_data_args(train)
    _add_model_args(train)
    _add_eval_args(train)
    train.add_argument("--no-eval", action="store_true", help="skip the holdout evaluation")
    train.add_argument("--out", metavar="DIR", help="write the versioned model directory here")
    train.add_argument("--force", action="store_true", help="replace an existing --out directory")
    train.add_argument("--publish", action="store_true", help="publish to Redis and activate after training")
    _add_engine_args(train, "fit ALS (pyspark.ml ALS, implicit preferences) and write the --algorithm als artifact")
    _add_redis_arg(train)

    evaluate = sub.add_parser("evaluate", help="time-based holdout evaluation beside the popularity baseline")
    _add_data_args(evaluate)
    _add_model_args(evaluate)
    _add_eval_args(evaluate)
    _add_engine_args(evaluate, "fit ALS (pyspark.ml ALS, implicit preferences) for the holdout evaluation")

    rec = sub.add_parser("recommend", help="batch recommendations as CSV (customer_id,rank,item_id,score,source; "
                                                 "source: personalized | popular-fallback)")
    rec.add_argument("--model", required=True, metavar="DIR")
    rec.add_argument("--customers", required=True, metavar="FILE", help="customer ids, one per line; - for stdin")
    rec.add_argument("--n", type=int, default=10, metavar="N")
    rec.add_argument("--exclude-purchased", action="store_true", help="never recommend what was bought")
    rec.add_argument("--output", required=True, metavar="OUT.csv", help="- for stdout")
    rec.add_argument("--redis-url", default=None, metavar="URL",
                     help="the service's Redis, so that each list is the API's answer now: the items deactivated "
                          "there (PATCH /v1/items/ID) are in no list, and customers with events since training "
                          "(purchases, views, carts, clicks) are scored with them, as GET "
                          "/v1/customers/ID/recommendations does (source `session` for one the model does not "
                          "know) (default: none read, the model directory alone)")
    _add_engine_args(rec, "score the customers in parallel partitions, merged into OUT.csv")

    aud = sub.add_parser("audience", help="the customers to target (POST /v1/audiences in batch) as CSV "
                                          "(customer_id,score,reason)",
                         description="The customers to target, as POST /v1/audiences answers, over every customer "
                                     "of a model directory. Give exactly one targeting option (--items, "
                                     "--categories, --promotion-id, --lookalike, --due-for-reorder; "
                                     "--due-for-reorder may be combined with all but --lookalike), --size and/or "
                                     "--min-score, optionally --eligibility. Journey stages and \"now\" follow "
                                     "TAILOR_LAPSED_DAYS, TAILOR_REPEAT_MIN_ORDERS and TAILOR_CLOCK, as in the API.")
    aud.add_argument("--model", required=True, metavar="DIR")
    aud.add_argument("--items", nargs="+", metavar="ITEM", help="target items: affinity for them")
    aud.add_argument("--categories", nargs="+", metavar="CATEGORY", help="target categories: summed affinity")
    aud.add_argument("--promotion-id", metavar="ID",
                     help="a promotion defined in Redis (PUT /v1/promotions/ID; see --redis-url): its items and "
                          "categories are the targets (none: every item, site-wide; items deactivated in that Redis "
                          "with PATCH /v1/items/ID left out, as the API does) and its eligibility applies, each rule "
                          "replaced by the same rule of --eligibility where given")
    aud.add_argument("--lookalike", nargs="+", metavar="CUSTOMER", help="seed customers: the most similar others")
    aud.add_argument("--due-for-reorder", action="store_true",
                     help="customers past their typical re-order interval of an item (of --items, --categories or "
                          "--promotion-id if given)")
    aud.add_argument("--eligibility", metavar="JSON",
                     help="only customers these rules admit, the rules of promotions: a JSON object (or @FILE "
                          "holding one) with any of customers (list of ids), min_orders (integer >= 0), min_spend "
                          "(number >= 0), countries (list, case-insensitive), journey_stages (list of: new, "
                          "first-time buyer, repeat, lapsed); e.g. '{\"min_orders\": 2, \"countries\": "
                          "[\"france\"]}'")
    aud.add_argument("--size", type=int, default=None, metavar="N", help="at most N customers (1..100000)")
    aud.add_argument("--min-score", type=float, default=None, metavar="X", help="only customers scoring >= X")
    aud.add_argument("--output", required=True, metavar="OUT.csv", help="- for stdout")
    aud.add_argument("--redis-url", default=None, metavar="URL",
                     help="the Redis of --promotion-id (default: $REDIS_URL, else redis://127.0.0.1:6379/0); given, "
                          "or with --promotion-id, the items deactivated there (PATCH /v1/items/ID) are never "
                          "targets and the purchases it received since the model's data count, as in the API; "
                          "otherwise only the model directory is read")

    publish = sub.add_parser("publish", help="copy a model directory into Redis and activate it")
    publish.add_argument("--model", required=True, metavar="DIR")
    publish.add_argument("--no-activate", action="store_true", help="upload only")
    publish.add_argument("--keep", type=int, default=None, metavar="N",
                         help="model versions kept for rollback (default: $TAILOR_KEEP_VERSIONS or 3)")
    publish.add_argument("--warm", nargs="?", type=int, const=0, default=None, metavar="N",
                         help="then compute the default recommendations of the N customers who bought most "
                              "recently (all without N) and share them with the API's processes (run with the "
                              "API's environment; about 1-2 ms per customer)")
    _add_redis_arg(publish)

    models = sub.add_parser("models", help="list, activate, roll back or delete published versions")
    _add_redis_arg(models)
    # --redis-url is accepted after the action too (`tailor models list --redis-url URL`), as --quiet is.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--redis-url", default=argparse.SUPPRESS, metavar="URL",
                       help="Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", parents=[after], help="published versions with their metrics")
    mlist.add_argument("--json", action="store_true")
    msub.add_parser("activate", parents=[after], help="make VERSION the served model").add_argument("version")
    msub.add_parser("rollback", parents=[after], help="re-activate the previously active version")
    msub.add_parser("delete", parents=[after], help="delete a non-active VERSION").add_argument("version")

    retrain = sub.add_parser("retrain", help="train, evaluate against the active model, publish only if not worse")
    _add_data_args(retrain)
    _add_model_args(retrain)
    retrain.add_argument("--holdout-days", type=float, default=30.0, metavar="DAYS")
    retrain.add_argument("--tolerance", type=float, default=None, metavar="FRACTION",
                         help="allowed relative NDCG drop vs the active model (default: $TAILOR_RETRAIN_TOLERANCE "
                              "or 0.02)")
    retrain.add_argument("--force", action="store_true", help="publish even if the quality gate fails")
    retrain.add_argument("--out", default="var/models", metavar="DIR", help="where model directories go")
    retrain.add_argument("--every", type=float, default=None, metavar="HOURS",
                         help="run again every HOURS (for the trainer service); default: once")
    retrain.add_argument("--json", action="store_true")
    _add_redis_arg(retrain)

    config = sub.add_parser("config", help="print the effective configuration, secrets masked")
    config.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the HTTP API under gunicorn")
    serve.add_argument("--bind", default=None, metavar="HOST:PORT", help="default: $TAILOR_BIND or 127.0.0.1:8000")
    serve.add_argument("--workers", type=int, default=None, metavar="N", help="default: 2 x cores + 1")
    demo = sub.add_parser("demo", help="embedded Redis + train on the shipped sample + publish + serve")
    demo.add_argument("--bind", default="127.0.0.1:8000", metavar="HOST:PORT")
    demo.add_argument("--workers", type=int, default=None, metavar="N")
    return parser
