"""The `tailor` commands that manage model versions in Redis: `publish` (with `--warm`) and `models`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tailor.errors import CliError


def publish_dir(model_dir: Path | str, redis_url: str | None, *, activate: bool, keep: int | None,
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
    if args.warm is not None and args.warm < 0:
        raise CliError(f"--warm {args.warm}: give a number of customers (0 or none = all)")
    if args.warm is not None and args.no_activate:
        raise CliError("--warm computes the answers of the active model: it cannot be combined with --no-activate")
    publish_dir(args.model, args.redis_url, activate=not args.no_activate, keep=args.keep, quiet=args.quiet)
    if args.warm is not None:
        _warm(args.model, args.redis_url, limit=args.warm, quiet=args.quiet)
    return 0


def _warm(model_dir: Path | str, redis_url: str | None, *, limit: int, quiet: bool) -> None:
    """Share the default answers (``service.usecases.warmup``) of the ``limit`` (0 = all) customers who bought
    most recently, from a service built like the API's."""
    from tqdm import tqdm

    from scoring.artifact import customers_latest_first
    from service import create_app
    from service.usecases.warmup import warm_answers

    customers = customers_latest_first(model_dir)
    if limit > 0:
        customers = customers[:limit]
    # Only the engine is used (no HTTP request is served), so API keys are not needed here.
    # Its routine INFO lines (model loaded, cache tracking on) are not news on a terminal.
    app = create_app({"TAILOR_PUBLIC_READ": "true", "TAILOR_LOG_LEVEL": os.environ.get("TAILOR_LOG_LEVEL", "warning"),
                      **({"REDIS_URL": redis_url} if redis_url else {})})
    tailor = app.extensions["tailor"]
    tailor.store.start(wait_s=10.0)
    bar = tqdm(total=len(customers), unit="customer", desc="warm", disable=quiet, file=sys.stderr)
    try:
        result = warm_answers(tailor.engine, customers, progress=bar.update)
    except ValueError as exc:
        raise CliError(f"--warm: {exc}") from None
    finally:
        bar.close()
        tailor.close()
    if not quiet:
        print(f"warmed {result.customers:,} customers' answers in {result.seconds:.1f} s "
              f"({result.per_second:,.0f} customers/s; {result.failed:,} left to their first request)",
              file=sys.stderr)


def cmd_models(args: argparse.Namespace) -> int:
    from redis_state import versions

    client = versions.connect(args.redis_url)
    action = args.models_command
    if action == "list":
        listed = versions.list_versions(client)
        if args.json:
            print(json.dumps(listed, indent=2))
        else:
            print(versions.format_versions(listed))
    elif action == "activate":
        versions.activate_version(client, args.version)
        print(f"activated {args.version}")
    elif action == "rollback":
        print(f"rolled back to {versions.rollback(client)}")
    elif action == "delete":
        versions.delete_version(client, args.version)
        print(f"deleted {args.version}")
    return 0
