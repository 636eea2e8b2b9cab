"""The `tailor` command: train, evaluate, recommend, publish, manage model versions and serve.

Every user error is one line on stderr (``tailor: error: ...``) and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scoring.threads import limit_blas_threads, pin_env_threads
from settings import unrecognised_variables
from tailor.audience_cli import cmd_audience
from tailor.errors import EXIT_REJECTED, EXIT_USAGE, CliError
from tailor.outputs import open_output, output
from tailor.parser import build_parser, hyperparameter_flags
from tailor.served_state import deactivated_items, live_rows, read_redis, served_version_note
from tailor.service_settings import clock_now_day, setting
from tailor.versions_cli import cmd_models, cmd_publish, publish_dir

if TYPE_CHECKING:
    from training.batch import LiveRow
    from training.data import PurchaseLog
    from training.evaluate import EvaluationResult
    from training.pipeline import PhaseTimer
    from training.spark_als import SparkALSRecommender


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """The hyper-parameters given on the command line, checked against the chosen algorithm."""
    from scoring.models import DEFAULT_ALGORITHM, HYPERPARAMETERS

    algorithm = args.algorithm or DEFAULT_ALGORITHM
    declared = HYPERPARAMETERS[algorithm]
    given: dict[str, Any] = {}
    for name, owners in hyperparameter_flags().items():
        value = getattr(args, f"hp_{name}")
        if value is None:
            continue
        flag = owners[0][1].flag
        if name not in declared:
            raise CliError(f"{flag} does not apply to --algorithm {algorithm} "
                           f"(it applies to: {', '.join(alg for alg, _ in owners)})")
        try:
            converted = declared[name].convert(value)
        except (TypeError, ValueError) as exc:
            raise CliError(f"{flag}: {exc}") from None
        given[name] = converted
    return given


def _load_log(args: argparse.Namespace) -> PurchaseLog:
    from training.data import ColumnNames, load_purchase_log, parse_until

    until = parse_until(args.until) if args.until else None
    columns = ColumnNames(customer=args.customer_col, item=args.item_col, time=args.time_col,
                          quantity=args.quantity_col, price=args.price_col, title=args.title_col,
                          category=args.category_col, country=args.country_col, basket=args.basket_col,
                          segments=tuple(args.segment_col))
    log = load_purchase_log(args.data, fmt=args.format, columns=columns, until=until,
                            max_bad_rows=args.max_bad_rows, time_format=args.time_format)
    if args.events_from:
        from training.events import append_stream_purchases

        log = append_stream_purchases(log, args.events_from, until=until)
    return log


def _check_model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags, checked before the log is read (a wrong value must not cost a long read first)."""
    params = _hyperparameters(args)
    if args.tune_budget < 0:
        raise CliError(f"--tune-budget must be 0 (no search) or a positive number of seconds, got {args.tune_budget}")
    return params


def _read_phase(args: argparse.Namespace, timer: PhaseTimer) -> PurchaseLog:
    with timer.phase("read") as info:
        log = _load_log(args)
        info["detail"] = f"{log.report.rows_read:,} rows read, {log.report.rows_kept:,} kept"
    if not args.quiet:
        print(log.report.format(), file=sys.stderr)
    return log


def _choose_model(args: argparse.Namespace, log: PurchaseLog,
                  timer: PhaseTimer) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(algorithm, params, tuning report): forced by --algorithm or model flags, else chosen on validation
    folds that end where the evaluation holdout starts (``training.tuning``)."""
    from scoring.models import DEFAULT_ALGORITHM
    from training.tuning import search

    params = _check_model_flags(args)
    if args.algorithm or params or args.tune_budget == 0:
        return args.algorithm or DEFAULT_ALGORITHM, params, None
    with timer.phase("tune") as info:
        result = search(log.interactions, holdout_days=args.holdout_days, budget_s=args.tune_budget,
                        quiet=args.quiet)
        info["detail"] = "no validation fold before the holdout" if result is None else (
            f"{len(result.trials)} configurations, "
            + (f"kept {result.algorithm} (budget spent first)" if result.kept_default else f"chose {result.algorithm}"))
    if result is None:
        if not args.quiet:
            print(f"tuning: the log is too short for a validation fold before the {args.holdout_days:g}-day "
                  f"holdout; using {DEFAULT_ALGORITHM} with its defaults", file=sys.stderr)
        return DEFAULT_ALGORITHM, {}, None
    if not args.quiet:
        print(result.format(), file=sys.stderr)
    return result.algorithm, result.params, result.to_dict()


def _spark_model(args: argparse.Namespace, params: dict[str, Any]) -> SparkALSRecommender | None:
    """An unfitted ALS whose fit runs on Spark (``--engine spark``), or None for the default engine."""
    if getattr(args, "engine", "local") != "spark":
        return None
    from training.spark_als import SparkALSRecommender, spark_session

    spark_session(args.spark_master)  # no Java / no pyspark / a bad master: one line, before any work
    return SparkALSRecommender(args.spark_master, **params)


def _check_spark_algorithm(args: argparse.Namespace) -> None:
    """``--engine spark`` means ``--algorithm als``; without Java or pyspark, fail before any work."""
    if args.engine == "spark":
        if args.algorithm not in (None, "als"):
            raise CliError(f"--engine spark fits ALS only (the artifact of --algorithm als), not {args.algorithm}")
        args.algorithm = "als"
        _spark_model(args, {})


def _evaluate(args: argparse.Namespace, log: PurchaseLog, algorithm: str, params: dict[str, Any],
              timer: PhaseTimer) -> EvaluationResult:
    from training.evaluate import evaluate

    with timer.phase("evaluate") as info, limit_blas_threads():
        result = evaluate(log.interactions, algorithm, params, holdout_days=args.holdout_days,
                          model=_spark_model(args, params))
        info["detail"] = f"holdout {args.holdout_days:g} days"
    if not args.quiet or not args.json:
        print(result.format(), file=sys.stderr if args.json else sys.stdout)
    return result


def cmd_train(args: argparse.Namespace) -> int:
    from scoring.artifact import default_model_dir, write_artifact
    from training.pipeline import PhaseTimer, train_artifact

    if not args.out and not args.publish:
        raise CliError("nothing to do: give --out DIR and/or --publish")
    if args.out and Path(args.out).exists() and not args.force:
        raise CliError(f"{args.out} already exists; give --force to replace it")
    _check_spark_algorithm(args)
    _check_model_flags(args)
    timer = PhaseTimer(quiet=args.quiet)
    log = _read_phase(args, timer)
    algorithm, params, tuning = _choose_model(args, log, timer)
    evaluation = None if args.no_eval else _evaluate(args, log, algorithm, params, timer).to_dict()
    spark = _spark_model(args, params)
    artifact = train_artifact(log, algorithm, params, timer=timer, evaluation=evaluation, until=args.until,
                              tuning=tuning, model=spark)
    if spark is not None:
        artifact.manifest["engine"] = {"name": "spark", **spark.spark_params}
    out = Path(args.out) if args.out else default_model_dir(artifact.version)
    with timer.phase("write") as info:
        write_artifact(out, artifact)
        info["detail"] = str(out)
    if args.publish:
        publish_dir(out, args.redis_url, activate=True, keep=None, quiet=args.quiet)
    summary = {"version": artifact.version, "model_dir": str(out), "algorithm": algorithm,
               "params": artifact.manifest["params"], "data_quality": log.report.to_dict(),
               "tuning": tuning, "evaluation": evaluation, "phases": timer.phases}
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(f"model {artifact.version} written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.pipeline import PhaseTimer

    _check_spark_algorithm(args)
    _check_model_flags(args)
    timer = PhaseTimer(quiet=args.quiet)
    log = _read_phase(args, timer)
    algorithm, params, tuning = _choose_model(args, log, timer)
    result = _evaluate(args, log, algorithm, params, timer)
    if args.json:
        print(json.dumps({"data_quality": log.report.to_dict(), "tuning": tuning, "evaluation": result.to_dict(),
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
    customer_ids = read_customer_ids(open_lines(args.customers))
    now_day = clock_now_day()
    inactive: set[int] = set()
    live: dict[str, LiveRow] = {}
    if args.redis_url:  # the service's deactivated items and events; without the flag no Redis is read
        session_max_items = setting("TAILOR_SESSION_MAX_ITEMS")
        inactive, live, note = read_redis(args.redis_url, "--redis-url", lambda client: (
            deactivated_items(artifact, client),
            live_rows(artifact, client, customer_ids, args.exclude_purchased, session_max_items, now_day),
            served_version_note(artifact, client)))
        if note and not args.quiet:
            print(note, file=sys.stderr)
    if args.engine == "spark":
        from training.spark_als import export_recommendations_spark

        if args.output == "-":
            raise CliError("--engine spark writes a file: give --output OUT.csv")
        open_output(args.output).close()  # an unwritable path fails before Spark starts
        counts = export_recommendations_spark(args.model, customer_ids, args.n, args.exclude_purchased,
                                              args.output, master=args.spark_master, inactive=inactive, live=live,
                                              now_day=now_day)
    else:
        with output(args.output) as out:
            counts = export_recommendations(artifact, customer_ids, args.n, args.exclude_purchased, out,
                                            progress=not args.quiet and args.output != "-", inactive=inactive,
                                            live=live, now_day=now_day)
    if not args.quiet:
        events = f", {counts['live']:,} scored with their events since training" if args.redis_url else ""
        print(f"{counts['rows']:,} rows for {counts['customers']:,} customers "
              f"({counts['fallback']:,} unknown -> popular fallback{events}) written to {args.output}",
              file=sys.stderr)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import time

    from redis_state.versions import connect
    from settings import DEFAULT_REDIS_URL
    from training.pipeline import PhaseTimer
    from training.retrain import retrain

    # The feedback loop: unless told otherwise, learn from the events stream of the Redis we publish to.
    args.events_from = args.events_from or args.redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    tolerance = args.tolerance if args.tolerance is not None else float(setting("TAILOR_RETRAIN_TOLERANCE"))
    if not 0 <= tolerance < 1:
        raise CliError(f"--tolerance must be in [0, 1), got {tolerance}")
    _check_model_flags(args)  # a wrong model flag fails before the first run
    while True:
        timer = PhaseTimer(quiet=args.quiet)
        client = connect(args.redis_url)
        log = _read_phase(args, timer)
        algorithm, params, tuning = _choose_model(args, log, timer)
        outcome = retrain(log, algorithm, params, client, out_root=Path(args.out), tolerance=tolerance,
                          force=args.force, holdout_days=args.holdout_days, timer=timer, tuning=tuning)
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
    "train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend, "audience": cmd_audience,
    "publish": cmd_publish,
    "models": cmd_models, "serve": cmd_serve, "demo": cmd_demo, "retrain": cmd_retrain, "config": cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    pin_env_threads(1)
    parser = build_parser()
    args = parser.parse_args(argv)
    for warning in unrecognised_variables():
        print(f"tailor: warning: {warning}", file=sys.stderr)
    from redis_state.versions import PublishError
    from scoring.artifact import ArtifactError
    from scoring.models.base import FitError
    from training.data import DataError
    from training.evaluate import HoldoutError
    from training.spark_als import SparkError

    try:
        return COMMANDS[args.command](args)
    except (CliError, DataError, ArtifactError, PublishError, SparkError, FitError) as exc:
        print(f"tailor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HoldoutError as exc:
        remedy = "a smaller --holdout-days" + (" or --no-eval" if args.command == "train" else "")
        print(f"tailor: error: {getattr(args, 'data', None) or 'the log'}: {exc}; pass {remedy}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tailor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
