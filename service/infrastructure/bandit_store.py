"""The message-variant bandit's state in Redis (the math is pure: ``service.domain.bandit``).

State lives under the slot's hash tag and is shared by every API process: a Lua script adds x xᵀ to A
(upper triangle, packed float64) when a decision is made and stores x (float32, 120 bytes) with the
decision for its attribution window; when the decision's first reward arrives, b += that x, guarded by a
flag in the decision's own hash so a reward is counted once however often the event is delivered. Each
process re-reads the statistics of a slot at most every ``poll_s`` seconds and computes the posterior in
numpy (K x 30 x 30), never per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from redis_state import keys
from service.domain.bandit import (
    CONTEXT_DIM,
    LAMBDA,
    SIGMA,
    Choice,
    LinearPosterior,
    beta_ts_probabilities,
    choose,
    context_vector,
    linear_ts_probabilities,
    pack_context,
    unpack_upper,
    unpack_vector,
)
from service.domain.targeting import CustomerFacts, as_text, new_decision_id
from service.infrastructure.scripts import Lua, ScriptCall

DECIDE = Lua("""
-- KEYS: stats, model, decision
-- ARGV: variant, customer, now_ms, ttl_s, explore (0|1), propensity, w_learned, w_uniform, space, d, x
local v, space = ARGV[1], ARGV[9]
redis.call('HINCRBY', KEYS[1], 'decisions', 1)
redis.call('HINCRBY', KEYS[1], 'decisions:' .. v, 1)
redis.call('HINCRBY', KEYS[1], 'impressions:' .. v, 1)
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[1], 'explore_decisions:' .. v, 1) end
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_w_learned', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_w_uniform', ARGV[8])
if space == '' then
  redis.call('HINCRBY', KEYS[1], 'anon_decisions:' .. v, 1)
else
  local d = tonumber(ARGV[10])
  local m = d * (d + 1) / 2
  local x = {struct.unpack('<' .. string.rep('f', d), ARGV[11])}
  local field = 'A:' .. space .. ':' .. v
  local blob = redis.call('HGET', KEYS[2], field)
  local a
  if blob and #blob == 8 * m then
    a = {struct.unpack('<' .. string.rep('d', m), blob)}
  else
    a = {}
    for i = 1, m do a[i] = 0 end
  end
  local k = 1
  for i = 1, d do
    local xi = x[i]
    for j = i, d do
      a[k] = a[k] + xi * x[j]
      k = k + 1
    end
  end
  redis.call('HSET', KEYS[2], field, struct.pack('<' .. string.rep('d', m), unpack(a, 1, m)))
end
redis.call('HSET', KEYS[3], 'v', v, 'c', ARGV[2], 't', ARGV[3], 'e', ARGV[5], 'p', ARGV[6],
           'wl', ARGV[7], 'wu', ARGV[8], 's', space, 'x', ARGV[11])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return 1
""")


REWARD = Lua("""
-- KEYS: stats, model, decision ; ARGV: event type (click | conversion), customer ('' = do not check)
if redis.call('EXISTS', KEYS[3]) == 0 then return 'unknown' end
local f = redis.call('HMGET', KEYS[3], 'v', 'c', 'e', 'wl', 'wu', 's', 'x')
local v = f[1]
if ARGV[2] ~= '' and f[2] ~= ARGV[2] then return 'mismatch' end
local flag, counter = 'clicked', 'clicks:'
if ARGV[1] == 'conversion' then flag, counter = 'converted', 'conversions:' end
local fresh = redis.call('HSETNX', KEYS[3], flag, '1')
if fresh == 1 then redis.call('HINCRBY', KEYS[1], counter .. v, 1) end
if redis.call('HSETNX', KEYS[3], 'rewarded', '1') == 0 then
  if fresh == 1 then return 'counted' end
  return 'duplicate'
end
redis.call('HINCRBY', KEYS[1], 'rewards', 1)
redis.call('HINCRBY', KEYS[1], 'rewards:' .. v, 1)
if f[3] == '1' then redis.call('HINCRBY', KEYS[1], 'explore_rewards:' .. v, 1) end
local wl, wu = tonumber(f[4]), tonumber(f[5])
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_learned', f[4])
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_learned_sq', string.format('%.17g', wl * wl))
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_uniform', f[5])
redis.call('HINCRBYFLOAT', KEYS[1], 'ips_uniform_sq', string.format('%.17g', wu * wu))
local space = f[6]
if space == '' then
  redis.call('HINCRBY', KEYS[1], 'anon_rewards:' .. v, 1)
elseif redis.call('HEXISTS', KEYS[2], 'A:' .. space .. ':' .. v) == 1 then
  local d = #f[7] / 4
  local x = {struct.unpack('<' .. string.rep('f', d), f[7])}
  local field = 'b:' .. space .. ':' .. v
  local blob = redis.call('HGET', KEYS[2], field)
  local b
  if blob and #blob == 8 * d then
    b = {struct.unpack('<' .. string.rep('d', d), blob)}
  else
    b = {}
    for i = 1, d do b[i] = 0 end
  end
  for i = 1, d do b[i] = b[i] + x[i] end
  redis.call('HSET', KEYS[2], field, struct.pack('<' .. string.rep('d', d), unpack(b, 1, d)))
end
return 'rewarded'
""")


def reward_keys(slot: str, decision_id: str) -> list[str]:
    """KEYS of ``DECIDE`` and ``REWARD``: the slot's stats and model, and the decision."""
    return [keys.message_stats(slot), keys.message_model(slot), keys.message_decision(slot, decision_id)]


@dataclass(frozen=True)
class SlotModel:
    """One process's view of a slot's learned state (recomputed at most every ``poll_s``)."""

    variants: tuple[str, ...]
    space: str
    posterior: LinearPosterior | None
    anon_rewards: np.ndarray
    anon_decisions: np.ndarray
    loaded_at: float


class Bandit:
    """Decides variants for one or many slots; state shared through Redis, cached per process."""

    def __init__(self, *, lam: float = LAMBDA, sigma: float = SIGMA, draws: int = 500, poll_s: float = 0.5,
                 attribution_days: float = 7.0, rng: np.random.Generator | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lam = lam
        self.sigma = sigma
        self.draws = draws
        self.poll_s = poll_s
        self.attribution_s = int(attribution_days * 86_400)
        self.rng = rng if rng is not None else np.random.default_rng()
        self._clock = clock
        self._models: dict[str, SlotModel] = {}
        self._lock = threading.Lock()
        self._rng_lock = threading.Lock()

    # -- state ----------------------------------------------------------------------------------------
    def model(self, client: redis.Redis, slot: str, variants: Sequence[str], space: str) -> SlotModel:
        """The slot's posterior for ``variants`` in context ``space``, re-read from Redis at most every poll_s."""
        now = self._clock()
        current = self._models.get(slot)
        if (current is not None and current.variants == tuple(variants) and current.space == space
                and now - current.loaded_at < self.poll_s):
            return current
        try:
            fresh = self._load(client, slot, tuple(variants), space, now)
        except (redis.RedisError, OSError):
            if current is not None and current.variants == tuple(variants) and current.space == space:
                return current
            raise
        with self._lock:
            self._models[slot] = fresh
        return fresh

    def invalidate(self, slot: str) -> None:
        self._models.pop(slot, None)

    def _load(self, client: redis.Redis, slot: str, variants: tuple[str, ...], space: str,
              now: float) -> SlotModel:
        k = len(variants)
        stat_fields = [f"{name}:{v}" for name in ("decisions", "rewards", "anon_decisions", "anon_rewards")
                       for v in variants]
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.message_stats(slot), stat_fields)
        if space:
            pipe.hmget(keys.message_model(slot), [f"{m}:{space}:{v}" for m in ("A", "b") for v in variants])
        results = pipe.execute()
        counts = np.asarray([int(x) if x else 0 for x in results[0]], dtype=np.float64).reshape(4, k)
        decisions, rewards, anon_decisions, anon_rewards = counts
        posterior = None
        if space:
            blobs = results[1]
            a = np.stack([unpack_upper(blob) for blob in blobs[:k]])
            b = np.stack([unpack_vector(blob) for blob in blobs[k:]])
            rate = (rewards + 1.0) / (decisions + 2.0)
            posterior = LinearPosterior.from_stats(a, b, rate, lam=self.lam, sigma=self.sigma)
        return SlotModel(variants, space, posterior, anon_rewards, anon_decisions, now)

    # -- deciding -------------------------------------------------------------------------------------
    def choose(self, client: redis.Redis, slot: str, variants: Sequence[str], exploration: float,
               customer: CustomerFacts, space: str | None) -> Choice:
        """Pick a variant for ``customer`` (contextual when there is a context and a space)."""
        x = context_vector(customer) if space else None
        used_space = space if x is not None and space else ""
        state = self.model(client, slot, variants, used_space)
        with self._rng_lock:
            if x is not None and state.posterior is not None:
                q = linear_ts_probabilities(state.posterior, x, self.rng, self.draws)
            else:
                q = beta_ts_probabilities(state.anon_rewards, state.anon_decisions, self.rng, self.draws)
            v, propensity, explore = choose(q, exploration, self.rng)
        return Choice(new_decision_id("m", slot), v, propensity, float(q[v]), explore, x, used_space)

    def record(self, slot: str, variants: Sequence[str], choice: Choice, customer_id: str,
               now_s: float) -> ScriptCall:
        """The decision's Lua script call (run it with ``targeting.run_scripts``)."""
        k = len(variants)
        x = b"" if choice.context is None else pack_context(choice.context)
        script_keys = reward_keys(slot, choice.decision_id)
        args = [variants[choice.variant], customer_id, int(now_s * 1000), self.attribution_s,
                1 if choice.explore else 0, repr(choice.propensity), repr(choice.learned / choice.propensity),
                repr((1.0 / k) / choice.propensity), choice.space, CONTEXT_DIM, x]
        return DECIDE, script_keys, args

    def reward(self, client: redis.Redis, slot: str, decision_id: str, event_type: str,
               customer_id: str | None = None) -> str:
        """Apply a click or conversion to its decision: counted once per type, rewarded once per decision.

        Returns ``rewarded`` (the model learned from it), ``counted`` (a second kind of feedback for an
        already rewarded decision), ``duplicate``, ``unknown`` (no such decision or past the attribution
        window), ``mismatch`` (another customer's decision) or ``ignored``.
        """
        if event_type not in ("click", "conversion"):
            return "ignored"
        return as_text(REWARD(client, reward_keys(slot, decision_id), [event_type, customer_id or ""]))
