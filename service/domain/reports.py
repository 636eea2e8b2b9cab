"""Report arithmetic for promotions and message slots: rates with 95% Wilson intervals, and the
inverse-propensity (IPS) estimates of what the learned policy and the uniform random policy earn.

Wilson rather than the normal approximation because rates here are small (a few percent) and counts
often low, where the normal interval leaves [0, 1] and undercovers. The IPS sums are accumulated in Redis
as decisions and rewards arrive (``service.domain.bandit``); this module only turns them into numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy.stats import norm

Z95 = float(norm.ppf(0.975))  # 1.959963984540054


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there were no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: float, trials: float, digits: int = 6) -> dict[str, Any]:
    """``{"value", "low", "high"}``: the proportion and its 95% Wilson interval (value None without trials)."""
    low, high = wilson(successes, trials)
    value = successes / trials if trials > 0 else None
    return {"value": None if value is None else round(value, digits), "low": round(low, digits),
            "high": round(high, digits)}


def mean_estimate(total: float, total_sq: float, n: float, digits: int = 6) -> dict[str, Any]:
    """Mean of n per-decision values from their sum and sum of squares, with a 95% normal interval."""
    if n <= 0:
        return {"value": None, "low": None, "high": None, "std_error": None}
    mean = total / n
    variance = max(total_sq / n - mean * mean, 0.0) * n / max(n - 1, 1)
    se = math.sqrt(variance / n)
    return {"value": round(mean, digits), "low": round(mean - Z95 * se, digits),
            "high": round(mean + Z95 * se, digits), "std_error": round(se, digits)}


def ips_summary(sums: Mapping[str, float], digits: int = 6) -> dict[str, Any]:
    """Off-policy estimates from the slot's IPS sums.

    Every decision i was drawn with propensity p_i = ε/K + (1-ε)·q_i, where q_i is the probability that
    the learned policy (Thompson sampling without the uniform share) picks the same variant. With reward
    r_i, the value of a target policy π is estimated by (1/n) Σ r_i·π(a_i|x_i)/p_i: for the learned policy
    the weight is q_i/p_i, for the uniform random policy (1/K)/p_i. The self-normalised variant (SNIPS)
    divides by Σ weights instead of n. ``sums`` holds n = ``decisions`` and, per policy, Σ w, Σ w·r and
    Σ (w·r)².
    """
    n = float(sums.get("decisions", 0.0))
    out: dict[str, Any] = {"decisions": int(n)}
    for policy in ("learned", "uniform"):
        wr = float(sums.get(f"ips_{policy}", 0.0))
        wr_sq = float(sums.get(f"ips_{policy}_sq", 0.0))
        w = float(sums.get(f"ips_w_{policy}", 0.0))
        estimate = mean_estimate(wr, wr_sq, n, digits)
        estimate["snips"] = round(wr / w, digits) if w > 0 else None
        out[policy] = estimate
    learned, uniform = out["learned"]["value"], out["uniform"]["value"]
    out["lift"] = round(learned / uniform, 4) if learned is not None and uniform else None
    return out
