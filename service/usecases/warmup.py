"""Answers computed ahead of traffic: a customer's default recommendations scored once, right after a publish.

Every API process reads a customer's shared answer with the customer (``SharedAnswers``), so an answer
computed here is served by every worker without scoring. Without it, the first request of each customer
after a publish pays a full scoring, and a newly activated model turns the first minutes of traffic into a
CPU spike (measured: a third of the answers of the first minute computed, docs/BENCHMARKS.md section 10).
The answers are those a request with the default arguments gets, computed by the same ``Engine`` code, so
they are exact; a process whose code or settings differ names its answers differently and ignores these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.domain.errors import NoActiveModel, Unavailable
from service.domain.ranking import DEFAULT_N
from service.usecases.engine import Engine


@dataclass(frozen=True)
class WarmResult:
    """How many customers' answers were computed (and shared), how many could not be, and how long it took."""

    customers: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.customers / self.seconds if self.seconds > 0 else 0.0


def warm_answers(engine: Engine, customer_ids: Iterable[str], *, n: int = DEFAULT_N,
                 progress: Callable[[], object] | None = None) -> WarmResult:
    """Compute and share the default answer of each customer under the active model (best effort: a customer
    Redis did not answer for is left to its first request); ``progress()`` after each customer."""
    if not engine.memoise:
        raise ValueError("answers are shared only when they are remembered: TAILOR_CLOCK=data and "
                         "TAILOR_ANSWER_CACHE_SIZE > 0")
    engine.serving()  # NoActiveModel before any work when nothing is active
    started = time.perf_counter()
    done = failed = 0
    for customer_id in customer_ids:
        try:
            engine.for_customer(customer_id, n=n)
            done += 1
        except (Unavailable, NoActiveModel):
            failed += 1
        if progress is not None:
            progress()
    return WarmResult(done, failed, time.perf_counter() - started)
