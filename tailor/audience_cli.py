"""`tailor audience`: the checks of its options (the API's targeting rule, ``--eligibility``), the settings
that shape the API's audiences, and the promotion read from Redis; the work is ``training.audience``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailor.errors import CliError
from tailor.outputs import output
from tailor.served_state import deactivated_items, read_redis, recent_buyers, redis_label
from tailor.service_settings import clock_now_day

if TYPE_CHECKING:
    import redis

    from scoring.artifact import Artifact
    from scoring.recent_buyers import RecentBuyer


def cmd_audience(args: argparse.Namespace) -> int:
    from scoring.artifact import read_artifact
    from training.audience import AudienceError, export_audience

    _check_targeting(args)
    if args.size is None and args.min_score is None:
        raise CliError("give --size N (1..100000) or --min-score X")
    if args.size is not None and not 1 <= args.size <= 100_000:
        raise CliError(f"--size must be between 1 and 100000, got {args.size}")
    eligibility = _eligibility(args.eligibility) if args.eligibility is not None else None
    stage_rules, now_day = _audience_clock()
    artifact = read_artifact(args.model)
    promotion: dict[str, Any] | None = None
    inactive: set[int] = set()
    recent: list[RecentBuyer] = []
    if args.promotion_id or args.redis_url:  # the model directory alone otherwise: no Redis is read
        promotion, inactive, recent = _from_redis(artifact, args.promotion_id, args.redis_url)
    with output(args.output) as out:
        try:
            counts = export_audience(artifact, out, items=args.items or (), categories=args.categories or (),
                                     lookalike=args.lookalike or (), due_for_reorder=args.due_for_reorder,
                                     promotion=promotion, eligibility=eligibility, stage_rules=stage_rules,
                                     now_day=now_day, size=args.size, min_score=args.min_score, inactive=inactive,
                                     recent=recent)
        except AudienceError as exc:
            raise CliError(str(exc)) from None
    if not args.quiet:
        since = f", {len(recent):,} of them with purchases since training" if recent else ""
        print(f"{counts['written']:,} customers written to {args.output}; scored {counts['customers']:,} customers"
              f"{since} in {counts['seconds']:.2f}s ({counts['customers_per_s']:,.0f} customers/s)", file=sys.stderr)
    return 0


def _check_targeting(args: argparse.Namespace) -> None:
    """Exactly one targeting option, as ``POST /v1/audiences``: --due-for-reorder may restrict --items,
    --categories or --promotion-id to re-orders, never --lookalike."""
    given = [name for name, value in (("--items", args.items), ("--categories", args.categories),
                                      ("--promotion-id", args.promotion_id), ("--lookalike", args.lookalike),
                                      ("--due-for-reorder", args.due_for_reorder)) if value]
    kinds = [name for name in given if name != "--due-for-reorder"]
    if len(kinds) > 1 or (len(given) > 1 and "--lookalike" in given):
        raise CliError(f"give exactly one of --items, --categories, --promotion-id, --lookalike (got "
                       f"{' and '.join(given)}; --due-for-reorder combines with all but --lookalike)")
    if not given:
        raise CliError("give one of --items, --categories, --promotion-id, --lookalike, --due-for-reorder")


def _eligibility(text: str) -> dict[str, Any]:
    """``--eligibility``: a JSON object, or ``@FILE`` holding one, checked like the API's ``eligibility``."""
    from scoring.audience import EligibilityError, check_eligibility

    where = "--eligibility"
    if text.startswith("@"):
        where = f"--eligibility {text}"
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{where}: cannot read {text[1:]} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{where}: not valid JSON: {exc}") from None
    try:
        return check_eligibility(doc)
    except EligibilityError as exc:
        raise CliError(f"{where}: {exc}") from None


def _audience_clock() -> tuple[Any, float | None]:
    """The journey stage thresholds and "now" of the API in this environment (TAILOR_LAPSED_DAYS,
    TAILOR_REPEAT_MIN_ORDERS, TAILOR_CLOCK): None = the end of the model's data."""
    from scoring.journey import StageRules
    from settings import ConfigError

    try:
        rules = StageRules.from_settings()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return rules, clock_now_day()


def _from_redis(artifact: Artifact, promotion_id: str | None,
                redis_url: str | None) -> tuple[dict[str, Any] | None, set[int], list[RecentBuyer]]:
    """The promotion's stored definition if one is named, read from Redis as the API reads it (deleted ones
    are unknown), the items the API would never target (``served_state.deactivated_items``) and the customers
    who bought since the model's data (``served_state.recent_buyers``)."""
    def read(client: redis.Redis) -> tuple[dict[str, Any] | None, set[int], list[RecentBuyer]]:
        promotion = None
        if promotion_id:  # imported only here: promotions bring scipy.stats (~1 s of start-up)
            from service.domain.errors import NotFound
            from service.infrastructure.promotion_book import PromotionBook

            try:
                promotion = PromotionBook().get(client, promotion_id)[0].to_document()
            except NotFound:
                raise CliError(f"--promotion-id {promotion_id}: no such promotion in "
                               f"{redis_label(redis_url)}") from None
        return promotion, deactivated_items(artifact, client), recent_buyers(artifact, client)

    return read_redis(redis_url, f"--promotion-id {promotion_id}" if promotion_id else "--redis-url", read)
