"""`tailor retrain`: scheduled retraining with a quality gate.

The candidate (the configured algorithm on the purchase log plus the events stream) and the active
version's configuration are fitted and scored on the *same* time-based holdout. The candidate is published
only if neither its overall nor its discovery NDCG falls below the active one's by more than the tolerance
(relative); otherwise the active model stays and the reason is reported. Every run, whatever its outcome,
leaves a line in the model history that `GET /v1/models` and `tailor models list` show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_state import keys
from redis_state.versions import log_event
from scoring.artifact import write_artifact
from scoring.threads import limit_blas_threads
from training.data import PurchaseLog
from training.evaluate import ModelReport, evaluate
from training.pipeline import PhaseTimer, train_artifact
from training.publish import publish_model

GATED_METRICS = ("overall", "discovery")


@dataclass
class RetrainOutcome:
    """What a retraining run decided, and on which numbers."""

    published: bool
    reason: str
    candidate: dict[str, Any]
    active: dict[str, Any] | None
    version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **self.log_fields()}

    def log_fields(self) -> dict[str, Any]:
        """Everything but the version, for the model history line."""
        return {"published": self.published, "reason": self.reason, "candidate": self.candidate,
                "active": self.active, **self.details}


def _summary(report: ModelReport) -> dict[str, Any]:
    return {"algorithm": report.algorithm, "params": report.params,
            "ndcg": {view: round(getattr(report, view).ndcg, 6) for view in GATED_METRICS}}


def active_manifest(client: redis.Redis) -> dict[str, Any] | None:
    version = client.get(keys.ACTIVE_MODEL)
    if version is None:
        return None
    raw = client.get(keys.model_manifest(version.decode()))
    return json.loads(raw) if raw else None


def gate(candidate: dict[str, Any], active: dict[str, Any] | None, tolerance: float) -> tuple[bool, str]:
    """(passes, reason): the candidate may be worse than the active config by at most ``tolerance`` (relative)."""
    if active is None:
        return True, "no active model"
    for view in GATED_METRICS:
        new, old = candidate["ndcg"][view], active["ndcg"][view]
        if new < old * (1.0 - tolerance):
            return False, (f"{view} NDCG@10 {new:.4f} is below the active model's {old:.4f} by more than "
                           f"{tolerance:.0%} on the same holdout")
    return True, "not worse than the active model on the same holdout"


def retrain(
    log: PurchaseLog,
    algorithm: str,
    params: dict[str, Any],
    client: redis.Redis,
    *,
    out_root: Path,
    tolerance: float = 0.02,
    force: bool = False,
    holdout_days: float = 30,
    timer: PhaseTimer,
    tuning: dict[str, Any] | None = None,
) -> RetrainOutcome:
    """Evaluate candidate vs active on one holdout, then publish the refitted candidate if it passes."""
    current = active_manifest(client)
    with timer.phase("evaluate") as info, limit_blas_threads():
        # evaluate() splits deterministically, so both configurations see exactly the same holdout.
        evaluation = evaluate(log.interactions, algorithm, params, holdout_days=holdout_days)
        candidate = _summary(evaluation.model)
        active = None
        if current is not None:
            same = current["algorithm"] == algorithm and current["params"] == candidate["params"]
            active = dict(candidate) if same else _summary(
                evaluate(log.interactions, current["algorithm"], current["params"], holdout_days=holdout_days).model)
            active["version"] = current["version"]
        info["detail"] = f"candidate vs {current['version'] if current else 'no active model'}"
    passes, reason = gate(candidate, active, tolerance)
    outcome = RetrainOutcome(published=False, reason=reason, candidate=candidate, active=active,
                             details={"tolerance": tolerance, "forced": force and not passes,
                                      "holdout_cutoff": evaluation.cutoff})
    if not passes and not force:
        log_event(client, "retrain-rejected", current["version"] if current else "-", **outcome.log_fields())
        return outcome
    artifact = train_artifact(log, algorithm, params, timer=timer, evaluation=evaluation.to_dict(), tuning=tuning)
    out = out_root / artifact.version
    with timer.phase("write"):
        write_artifact(out, artifact)
    outcome.version = publish_model(client, out, activate=True, progress=not timer.quiet)
    outcome.published = True
    if not passes:
        outcome.reason = f"forced despite: {reason}"
    log_event(client, "retrain-published", outcome.version, **outcome.log_fields())
    return outcome
