"""The message-variant bandit: contextual Thompson sampling over a Bayesian linear model per variant.

Context x (30 numbers) of a customer with a purchase history: a bias, the journey stage (one-hot), the
country (one-hot over 8 hashed buckets, stable across model versions), log orders, and the customer's
16-d embedding from the served model (``scoring.embeddings``). Per variant v the expected reward is
modelled as xᵀθ_v with prior θ_v ~ N(μ0, σ²/λ·I) and the posterior from the sufficient statistics

    A_v = Σ x xᵀ (over decisions that showed v),   b_v = Σ r x (over their rewards),
    precision (λI + A_v)/σ²,   mean (λI + A_v)⁻¹ (λμ0 + b_v).

Thompson sampling picks v with the probability q_v that v's sampled reward is the largest; for a given x
each xᵀθ_v is a univariate normal, so q is estimated cheaply by Monte Carlo over K numbers, and the
variant is then *drawn from q*. That makes the logged propensity exact: with exploration share ε a
decision picks uniformly with probability ε, else from q, so p(v) = ε/K + (1-ε)·q_v, which is what
off-policy (IPS) evaluation needs. Customers without a history get Beta-Bernoulli Thompson sampling
over the rewards of other such customers (non-contextual fallback).

Embeddings of different model versions live in different coordinates, so A and b are kept per "context
space" (the model version): a new version starts from a prior centred on each variant's observed reward
rate (μ0 = rate on the bias coordinate) and learns the rest afresh.

State lives in Redis under the slot's hash tag and is shared by every API process: a Lua script adds
x xᵀ to A (upper triangle, packed float64) when a decision is made and stores x (float32, 120 bytes)
with the decision for its attribution window; when the decision's first reward arrives, b += that x,
guarded by a flag in the decision's own hash so a reward is counted once however often the event is
delivered. Each process re-reads the statistics of a slot at most every ``poll_s`` seconds and computes
the posterior in numpy (K x 30 x 30), never per request.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from scoring.embeddings import EMBEDDING_DIM
from service.domain.profile import STAGES
from service.domain.targeting import CustomerFacts

#: Scale of the posterior that Thompson sampling draws from. The Bernoulli noise of click rates around 5-10%
#: is ~0.25, but sampling the exact posterior is known to over-explore (Chapelle & Li, 2011, scale the
#: variance down as well), and a slot's uniform share already keeps measuring every variant: 0.15 learned
#: markedly faster in the simulation (docs/BANDIT_BENCHMARK.md lists the runs with 0.3).
SIGMA = 0.15
#: Prior precision relative to the noise: coefficients start at N(μ0, σ²/λ) = sd 0.05 each, so a variant's
#: predicted rate starts within about ±0.1 of its overall rate instead of anywhere (λ=1 let the first few
#: hundred decisions' noise steer the policy).
LAMBDA = 10.0
COUNTRY_BUCKETS = 8
CONTEXT_DIM = 1 + len(STAGES) + COUNTRY_BUCKETS + 1 + EMBEDDING_DIM


def context_vector(customer: CustomerFacts) -> np.ndarray | None:
    """The customer's context, or None when there is no embedding (no purchase history the model knows)."""
    embedding = customer.embedding
    if embedding is None or not np.any(embedding):
        return None
    x = np.zeros(CONTEXT_DIM, dtype=np.float64)
    x[0] = 1.0
    offset = 1
    if customer.stage in STAGES:
        x[offset + STAGES.index(customer.stage)] = 1.0
    offset += len(STAGES)
    if customer.country:
        x[offset + zlib.crc32(customer.country.casefold().encode()) % COUNTRY_BUCKETS] = 1.0
    offset += COUNTRY_BUCKETS
    x[offset] = min(np.log1p(max(customer.orders, 0)) / np.log1p(100.0), 1.0)
    offset += 1
    e = np.asarray(embedding, dtype=np.float64).ravel()[:EMBEDDING_DIM]
    x[offset:offset + len(e)] = e
    return x


def pack_context(x: np.ndarray) -> bytes:
    """A context as stored with its decision: little-endian float32 (Lua ``struct`` '<f'), 120 bytes."""
    return np.asarray(x, dtype="<f4").tobytes()


def unpack_upper(blob: bytes | None, d: int = CONTEXT_DIM) -> np.ndarray:
    """Symmetric d x d matrix from its packed upper triangle (zeros when absent or malformed)."""
    out = np.zeros((d, d), dtype=np.float64)
    m = d * (d + 1) // 2
    if blob and len(blob) == 8 * m:
        upper = np.frombuffer(blob, dtype="<f8")
        out[np.triu_indices(d)] = upper
        out = out + np.triu(out, 1).T
    return out


def unpack_vector(blob: bytes | None, d: int = CONTEXT_DIM) -> np.ndarray:
    if blob and len(blob) == 8 * d:
        return np.frombuffer(blob, dtype="<f8").copy()
    return np.zeros(d, dtype=np.float64)


# -- posterior math (pure) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearPosterior:
    """Per-variant posterior mean (K, d) and covariance factor: Cov_v = σ² · inv[v]."""

    mean: np.ndarray
    inv: np.ndarray
    sigma: float

    @classmethod
    def from_stats(cls, a: np.ndarray, b: np.ndarray, prior_rate: np.ndarray, *, lam: float,
                   sigma: float) -> LinearPosterior:
        """``a`` (K, d, d) = Σ x xᵀ, ``b`` (K, d) = Σ r x, ``prior_rate`` (K,) = μ0 on the bias coordinate."""
        k, d = b.shape
        precision = a + lam * np.eye(d)[None, :, :]
        prior = np.zeros((k, d))
        prior[:, 0] = prior_rate
        inv = np.linalg.inv(precision)
        inv = 0.5 * (inv + np.transpose(inv, (0, 2, 1)))
        mean = np.einsum("kij,kj->ki", inv, b + lam * prior)
        return cls(mean, inv, sigma)

    def moments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of xᵀθ_v for every variant."""
        mu = self.mean @ x
        var = np.einsum("i,kij,j->k", x, self.inv, x)
        return mu, self.sigma * np.sqrt(np.maximum(var, 1e-12))


def win_probabilities(samples: np.ndarray) -> np.ndarray:
    """Share of rows (draws) in which each column (variant) is the largest."""
    k = samples.shape[1]
    return np.bincount(np.argmax(samples, axis=1), minlength=k) / samples.shape[0]


def linear_ts_probabilities(posterior: LinearPosterior, x: np.ndarray, rng: np.random.Generator,
                            draws: int) -> np.ndarray:
    mu, sd = posterior.moments(x)
    return win_probabilities(mu + sd * rng.standard_normal((draws, len(mu))))


def beta_ts_probabilities(successes: np.ndarray, trials: np.ndarray, rng: np.random.Generator,
                          draws: int) -> np.ndarray:
    alpha = 1.0 + np.maximum(successes, 0)
    beta = 1.0 + np.maximum(trials - successes, 0)
    return win_probabilities(rng.beta(alpha, beta, size=(draws, len(alpha))))


@dataclass(frozen=True)
class Choice:
    """One decision before it is recorded: what was picked, how likely that was, and why."""

    decision_id: str
    variant: int
    propensity: float  # p(v) = ε/K + (1-ε)·q_v
    learned: float  # q_v: probability under the learned policy alone
    explore: bool  # picked by the uniform share
    context: np.ndarray | None
    space: str  # "" for the non-contextual fallback


def choose(q: np.ndarray, exploration: float, rng: np.random.Generator) -> tuple[int, float, bool]:
    """Draw a variant: uniform with probability ``exploration``, else from q. Returns (v, p(v), explored)."""
    k = len(q)
    explore = bool(rng.random() < exploration)
    v = int(rng.integers(k)) if explore else int(rng.choice(k, p=q / q.sum()))
    return v, exploration / k + (1.0 - exploration) * float(q[v]), explore
