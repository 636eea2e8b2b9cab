"""Journey stages: one rule for the profile of one customer (the service) and for every customer at once
(audiences of the service and of ``tailor audience``), so both put a customer in the same stage.

* ``new``               no purchase known
* ``first-time buyer``  fewer than ``repeat_min_orders`` orders, last one within ``lapsed_days``
* ``repeat``            at least ``repeat_min_orders`` orders, last one within ``lapsed_days``
* ``lapsed``            purchases, but none in the last ``lapsed_days``

The thresholds are the settings ``TAILOR_LAPSED_DAYS`` and ``TAILOR_REPEAT_MIN_ORDERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from settings import setting_value

STAGES = ("new", "first-time buyer", "repeat", "lapsed")


@dataclass(frozen=True)
class StageRules:
    """Journey stage thresholds (TAILOR_LAPSED_DAYS, TAILOR_REPEAT_MIN_ORDERS)."""

    lapsed_days: float = 180.0
    repeat_min_orders: int = 2

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> StageRules:
        """The thresholds the service uses in this environment (``settings.ConfigError`` on a bad value)."""
        return cls(float(setting_value("TAILOR_LAPSED_DAYS", environ)),
                   int(setting_value("TAILOR_REPEAT_MIN_ORDERS", environ)))


def journey_stage(orders: int, last_day: float | None, now_day: float, rules: StageRules) -> str:
    """The journey stage of a customer with ``orders`` orders, the latest on ``last_day``."""
    if orders <= 0 or last_day is None:
        return "new"
    if now_day - last_day > rules.lapsed_days:
        return "lapsed"
    return "repeat" if orders >= rules.repeat_min_orders else "first-time buyer"


def stage_codes(orders: np.ndarray, last_day: np.ndarray, now_day: float, rules: StageRules) -> np.ndarray:
    """``journey_stage`` of every customer at once, as indices into ``STAGES`` (``last_day`` -inf: none)."""
    stage = np.full(len(orders), STAGES.index("first-time buyer"))
    stage[orders >= rules.repeat_min_orders] = STAGES.index("repeat")
    stage[now_day - last_day > rules.lapsed_days] = STAGES.index("lapsed")
    stage[orders <= 0] = STAGES.index("new")
    return stage
