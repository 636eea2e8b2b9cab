"""How cheap can scoring a basket get? The served numpy path next to a compiled, fused kernel (numba).

    python bench/basket_kernel.py --model MODEL_DIR [--baskets 5000]

Random baskets of 1-5 items of the model (a hybrid with EASE). "served path": what the API runs per basket
(``score_row``, the exact top 10, ``explain_row``); "numba kernel": the same score arithmetic (EASE rows
summed, min-max, CF weight, weighted popularity), masking, top 10 and the related basket item, fused into
one compiled loop. numba is not a dependency of Tailor: install it (``pip install numba``) to get the
second line. Used to estimate what a compiled kernel would do to the basket endpoint's throughput ratio
(docs/API_BENCHMARK.md, "Third pass").
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scoring.threads import pin_env_threads  # noqa: E402

pin_env_threads(1, openmp=True)

import numpy as np  # noqa: E402

from scoring.artifact import read_artifact  # noqa: E402
from service.domain.customer import basket_history  # noqa: E402
from service.domain.ranking import Filters, rank_scores  # noqa: E402


def per_call_us(fn: Callable[[np.ndarray], object], baskets: list[np.ndarray]) -> float:
    for basket in baskets[:300]:
        fn(basket)
    start = time.perf_counter()
    for basket in baskets:
        fn(basket)
    return (time.perf_counter() - start) / len(baskets) * 1e6


def fused_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def basket_top(weights, weighted_popularity, cf_weight, basket, n):  # pragma: no cover - compiled
        m = weights.shape[1]
        scores = weights[basket[0]].copy()
        for b in range(1, basket.shape[0]):
            scores += weights[basket[b]]
        low, high = scores.min(), scores.max()
        span = high - low
        for j in range(m):
            scaled = (scores[j] - low) / span if span > 0 else np.float32(0.0)
            scores[j] = scaled * cf_weight + weighted_popularity[j]
        for b in range(basket.shape[0]):
            scores[basket[b]] = -np.inf
        top = np.full(n, -1, dtype=np.int64)
        values = np.full(n, -np.inf, dtype=np.float32)
        for j in range(m):
            value = scores[j]
            if value > values[n - 1]:
                k = n - 1
                while k > 0 and values[k - 1] < value:
                    values[k], top[k] = values[k - 1], top[k - 1]
                    k -= 1
                values[k], top[k] = value, j
        related = np.empty(n, dtype=np.int64)
        for k in range(n):
            best, best_weight = -1, -np.inf
            for b in range(basket.shape[0]):
                if weights[basket[b], top[k]] > best_weight:
                    best, best_weight = basket[b], weights[basket[b], top[k]]
            related[k] = best
        return top, values, related

    return basket_top


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--baskets", type=int, default=5000)
    args = p.parse_args()
    model = read_artifact(args.model).model
    cf = getattr(model, "cf", None)
    if cf is None or not hasattr(cf, "weights"):
        sys.exit("needs a hybrid model with EASE (the default on catalogues up to 20,000 items)")
    n_items = cf.weights.shape[0]
    rng = np.random.default_rng(0)
    baskets = [np.unique(rng.choice(n_items, rng.integers(1, 6))).astype(np.int64) for _ in range(args.baskets)]
    codes = np.zeros(n_items, dtype=np.int64)
    now = float(model.popularity.size)  # any "now": a basket is bought now, its age is 0

    def served(basket: np.ndarray) -> object:
        row = basket_history(basket, n_items, now)
        top, _ = rank_scores(model.score_row(row), 10, Filters().with_blocked(basket), codes)
        return model.explain_row(row, top)

    print(f"served path (score_row + top 10 + explain_row): {per_call_us(served, baskets):.1f} µs per basket")
    kernel = fused_kernel()
    if kernel is None:
        print("numba kernel: numba is not installed (pip install numba)")
        return
    weights = np.ascontiguousarray(cf.weights, dtype=np.float32)
    weighted = (np.float32(model.params["popularity_weight"]) * model.popularity).astype(np.float32)
    cf_weight = np.float32(model.params["cf_weight"])
    top, _, _ = kernel(weights, weighted, cf_weight, baskets[0], 10)
    expected, _ = rank_scores(model.score_row(basket_history(baskets[0], n_items, now)), 10,
                              Filters().with_blocked(baskets[0]), codes)
    print(f"numba kernel agrees with the served top 10 on a basket: {top.tolist() == expected.tolist()}")
    print(f"numba kernel (fused score + top 10 + related item): "
          f"{per_call_us(lambda b: kernel(weights, weighted, cf_weight, b, 10), baskets):.1f} µs per basket")


if __name__ == "__main__":
    main()
