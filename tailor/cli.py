"""The `tailor` command: train, evaluate, recommend, publish, manage model versions and serve.

Every user error is one line on stderr (``tailor: error: ...``) and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scoring.threads import limit_blas_threads, pin_env_threads

EXIT_USAGE = 2
EXIT_REJECTED = 3  # retrain: the quality gate kept the active model


class CliError(Exception):
    """A one-line error for the user."""


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
    g.add_argument("--until", metavar="YYYY-MM-DD[THH:MM]", help="use only events strictly before this time")
    g.add_argument("--max-bad-rows", type=float, default=0.01, metavar="FRACTION",
                   help="stop when more than this share of rows is unparseable (default: 0.01)")
    g.add_argument("--events-from", metavar="REDIS_URL",
                   help="also read purchases that the service received as events (the feedback loop)")


def _flag_specs() -> dict[str, list[tuple[str, Any]]]:
    """Every hyper-parameter name -> [(algorithm, Param)], so one flag serves all algorithms that share it."""
    from scoring.models import HYPERPARAMETERS

    specs: dict[str, list[tuple[str, Any]]] = {}
    for algorithm, params in HYPERPARAMETERS.items():
        for name, param in params.items():
            specs.setdefault(name, []).append((algorithm, param))
    return specs


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from scoring.models import ALGORITHMS, DEFAULT_ALGORITHM

    g = p.add_argument_group("model (each flag applies to the algorithms named in its help)")
    g.add_argument("--algorithm", default=DEFAULT_ALGORITHM, choices=sorted(ALGORITHMS),
                   help=f"recommender (default: {DEFAULT_ALGORITHM}, chosen by measurement)")
    for name, owners in sorted(_flag_specs().items()):
        param = owners[0][1]
        defaults = ", ".join(f"{alg}: {prm.default}" for alg, prm in owners)
        g.add_argument(param.flag, dest=f"hp_{name}", default=None, metavar=param.type.__name__.upper(),
                       help=f"{param.help} (default {defaults})")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--holdout-days", type=float, default=30.0, metavar="DAYS",
                   help="hold out the last DAYS of the log (default: 30)")
    g.add_argument("--json", action="store_true", help="print the results as JSON on stdout")


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
    train.add_argument("--publish", action="store_true", help="publish to Redis and activate after training")
    _add_redis_arg(train)

    evaluate = sub.add_parser("evaluate", help="time-based holdout evaluation beside the popularity baseline")
    _add_data_args(evaluate)
    _add_model_args(evaluate)
    _add_eval_args(evaluate)

    rec = sub.add_parser("recommend", help="batch recommendations as CSV (customer_id,rank,item_id,score)")
    rec.add_argument("--model", required=True, metavar="DIR")
    rec.add_argument("--customers", required=True, metavar="FILE", help="customer ids, one per line; - for stdin")
    rec.add_argument("--n", type=int, default=10, metavar="N")
    rec.add_argument("--exclude-purchased", action="store_true", help="never recommend what was bought")
    rec.add_argument("--output", required=True, metavar="OUT.csv", help="- for stdout")

    publish = sub.add_parser("publish", help="copy a model directory into Redis and activate it")
    publish.add_argument("--model", required=True, metavar="DIR")
    publish.add_argument("--no-activate", action="store_true", help="upload only")
    publish.add_argument("--keep", type=int, default=None, metavar="N",
                         help="model versions kept for rollback (default: $TAILOR_KEEP_VERSIONS or 3)")
    _add_redis_arg(publish)

    models = sub.add_parser("models", help="list, activate, roll back or delete published versions")
    _add_redis_arg(models)
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="published versions with their metrics")
    mlist.add_argument("--json", action="store_true")
    msub.add_parser("activate", help="make VERSION the served model").add_argument("version")
    msub.add_parser("rollback", help="re-activate the previously active version")
    msub.add_parser("delete", help="delete a non-active VERSION").add_argument("version")

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


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """The hyper-parameters given on the command line, checked against the chosen algorithm."""
    from scoring.models import HYPERPARAMETERS

    declared = HYPERPARAMETERS[args.algorithm]
    given: dict[str, Any] = {}
    for name, owners in _flag_specs().items():
        value = getattr(args, f"hp_{name}")
        if value is None:
            continue
        flag = owners[0][1].flag
        if name not in declared:
            raise CliError(f"{flag} does not apply to --algorithm {args.algorithm} "
                           f"(it applies to: {', '.join(alg for alg, _ in owners)})")
        try:
            converted = declared[name].convert(value)
        except (TypeError, ValueError) as exc:
            raise CliError(f"{flag}: {exc}") from None
        if isinstance(converted, int | float) and not isinstance(converted, bool) and converted < 0:
            raise CliError(f"{flag} must not be negative, got {value}")
        given[name] = converted
    return given


def _load_log(args: argparse.Namespace):
    from training.data import ColumnNames, load_purchase_log, parse_until

    until = parse_until(args.until) if args.until else None
    columns = ColumnNames(customer=args.customer_col, item=args.item_col, time=args.time_col,
                          quantity=args.quantity_col, price=args.price_col, title=args.title_col,
                          category=args.category_col, country=args.country_col)
    log = load_purchase_log(args.data, fmt=args.format, columns=columns, until=until,
                            max_bad_rows=args.max_bad_rows)
    if args.events_from:
        from training.events import append_stream_purchases

        log = append_stream_purchases(log, args.events_from, until=until)
    return log


def _read_phase(args: argparse.Namespace, timer):
    with timer.phase("read") as info:
        log = _load_log(args)
        info["detail"] = f"{log.report.rows_read:,} rows read, {log.report.rows_kept:,} kept"
    if not args.quiet:
        print(log.report.format(), file=sys.stderr)
    return log


def _evaluate(args: argparse.Namespace, log, params: dict[str, Any], timer):
    from training.evaluate import evaluate

    with timer.phase("evaluate") as info, limit_blas_threads():
        result = evaluate(log.interactions, args.algorithm, params, holdout_days=args.holdout_days)
        info["detail"] = f"holdout {args.holdout_days:g} days"
    if not args.quiet or not args.json:
        print(result.format(), file=sys.stderr if args.json else sys.stdout)
    return result


def cmd_train(args: argparse.Namespace) -> int:
    from scoring.artifact import default_model_dir, write_artifact
    from training.pipeline import PhaseTimer, train_artifact

    if not args.out and not args.publish:
        raise CliError("nothing to do: give --out DIR and/or --publish")
    params = _hyperparameters(args)
    timer = PhaseTimer(quiet=args.quiet)
    log = _read_phase(args, timer)
    evaluation = None if args.no_eval else _evaluate(args, log, params, timer).to_dict()
    artifact = train_artifact(log, args.algorithm, params, timer=timer, evaluation=evaluation, until=args.until)
    out = Path(args.out) if args.out else default_model_dir(artifact.version)
    with timer.phase("write") as info:
        write_artifact(out, artifact)
        info["detail"] = str(out)
    if args.publish:
        _publish_dir(out, args.redis_url, activate=True, keep=None, quiet=args.quiet)
    summary = {"version": artifact.version, "model_dir": str(out), "algorithm": args.algorithm,
               "params": artifact.manifest["params"], "data_quality": log.report.to_dict(),
               "evaluation": evaluation, "phases": timer.phases}
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(f"model {artifact.version} written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.pipeline import PhaseTimer

    params = _hyperparameters(args)
    timer = PhaseTimer(quiet=args.quiet)
    log = _read_phase(args, timer)
    result = _evaluate(args, log, params, timer)
    if args.json:
        print(json.dumps({"data_quality": log.report.to_dict(), "evaluation": result.to_dict(),
                          "phases": timer.phases}, indent=2))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from scoring.artifact import read_artifact
    from training.batch import export_recommendations, open_lines, read_customer_ids

    if not 1 <= args.n <= 1000:
        raise CliError(f"--n must be between 1 and 1000, got {args.n}")
    if args.customers != "-" and not Path(args.customers).is_file():
        raise CliError(f"{args.customers}: no such file")
    artifact = read_artifact(args.model)
    lines = open_lines(args.customers)
    try:
        customer_ids = read_customer_ids(lines)
    finally:
        if lines is not sys.stdin:
            lines.close()
    out = sys.stdout if args.output == "-" else _open_output(args.output)
    try:
        counts = export_recommendations(artifact, customer_ids, args.n, args.exclude_purchased, out,
                                        progress=not args.quiet and args.output != "-")
    finally:
        if out is not sys.stdout:
            out.close()
    if not args.quiet:
        print(f"{counts['rows']:,} rows for {counts['customers']:,} customers "
              f"({counts['fallback']:,} unknown -> popular fallback) written to {args.output}", file=sys.stderr)
    return 0


def _open_output(path: str):
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror})") from None


def _publish_dir(model_dir: Path | str, redis_url: str | None, *, activate: bool, keep: int | None,
                 quiet: bool) -> str:
    from redis_state.versions import connect
    from scoring.artifact import read_manifest
    from training.publish import publish_model

    read_manifest(model_dir)  # a wrong directory is reported before Redis is contacted
    client = connect(redis_url)
    version = publish_model(client, model_dir, activate=activate, keep=keep, progress=not quiet)
    if not quiet:
        state = "published and activated" if activate else "published (not active)"
        print(f"model {version} {state}", file=sys.stderr)
    return version


def cmd_publish(args: argparse.Namespace) -> int:
    _publish_dir(args.model, args.redis_url, activate=not args.no_activate, keep=args.keep, quiet=args.quiet)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from redis_state import versions

    client = versions.connect(args.redis_url)
    action = args.models_command
    if action == "list":
        versions = versions.list_versions(client)
        if args.json:
            print(json.dumps(versions, indent=2))
        else:
            print(versions.format_versions(versions))
    elif action == "activate":
        versions.activate_version(client, args.version)
        print(f"activated {args.version}")
    elif action == "rollback":
        print(f"rolled back to {versions.rollback(client)}")
    elif action == "delete":
        versions.delete_version(client, args.version)
        print(f"deleted {args.version}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import os
    import time

    from redis_state.versions import connect
    from settings import DEFAULT_REDIS_URL
    from training.pipeline import PhaseTimer
    from training.retrain import retrain

    # The feedback loop: unless told otherwise, learn from the events stream of the Redis we publish to.
    args.events_from = args.events_from or args.redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if args.tolerance is not None:
        tolerance = args.tolerance
    else:
        from settings import ConfigError, setting_value

        try:
            tolerance = float(setting_value("TAILOR_RETRAIN_TOLERANCE"))
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    if not 0 <= tolerance < 1:
        raise CliError(f"--tolerance must be in [0, 1), got {tolerance}")
    params = _hyperparameters(args)
    while True:
        timer = PhaseTimer(quiet=args.quiet)
        client = connect(args.redis_url)
        log = _read_phase(args, timer)
        outcome = retrain(log, args.algorithm, params, client, out_root=Path(args.out), tolerance=tolerance,
                          force=args.force, holdout_days=args.holdout_days, timer=timer)
        if args.json:
            print(json.dumps(outcome.to_dict(), indent=2), flush=True)
        else:
            verdict = f"published {outcome.version}" if outcome.published else "kept the active model"
            print(f"retrain: {verdict}: {outcome.reason}", flush=True)
        if args.every is None:
            return 0 if outcome.published else EXIT_REJECTED
        time.sleep(args.every * 3600)


def cmd_config(args: argparse.Namespace) -> int:
    from settings import ConfigError, Settings

    try:
        config = Settings.load().masked()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(config, indent=2))
    else:
        width = max(len(k) for k in config)
        for name, value in config.items():
            print(f"{name:<{width}}  {value}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app.runner import serve

    return serve(bind=args.bind, workers=args.workers)


def cmd_demo(args: argparse.Namespace) -> int:
    from tailor.demo import run_demo

    return run_demo(bind=args.bind, workers=args.workers)


COMMANDS = {
    "train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend, "publish": cmd_publish,
    "models": cmd_models, "serve": cmd_serve, "demo": cmd_demo, "retrain": cmd_retrain, "config": cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    pin_env_threads(1)
    parser = build_parser()
    args = parser.parse_args(argv)
    from redis_state.versions import PublishError
    from scoring.artifact import ArtifactError
    from training.data import DataError

    try:
        return COMMANDS[args.command](args)
    except (CliError, DataError, ArtifactError, PublishError) as exc:
        print(f"tailor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tailor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
