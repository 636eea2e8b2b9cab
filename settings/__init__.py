"""Tailor's settings, read by the service and by the `tailor` command alike: one documented list of
environment variables, parsed once at start-up.

Every setting has a name (the environment variable), a default and a one-line meaning; ``SETTINGS`` is the
single source for the parser, for ``create_app(config)`` overrides in tests and for the README table
(``python -m settings`` prints it as Markdown). Values are validated here so that a typo stops the
service at start-up with a clear message instead of failing on the first request.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

SCOPES = ("read", "marketing", "admin")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # also the training CLI's default (tailor publish/retrain)


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use (message names the variable)."""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {text!r}")
    return value


def parse_api_keys(text: str) -> dict[str, str]:
    """``k1:read,k2:marketing`` -> {key: scope}; a key may itself contain ':' (the last one separates)."""
    keys: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, scope = part.rpartition(":")
        if not sep or not key:
            raise ValueError("expected comma-separated KEY:SCOPE pairs")
        scope = scope.strip().lower()
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r} (expected one of {', '.join(SCOPES)})")
        keys[key] = scope
    return keys


@dataclass(frozen=True)
class Setting:
    """One environment variable: where it goes, how it is parsed and what it means."""

    env: str
    attr: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    def value(self, raw: str) -> Any:
        """``raw`` parsed; ``ConfigError`` naming the variable (never showing a secret's value)."""
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.env}={'***' if self.secret else repr(raw)}: {exc}") from None


SETTINGS: tuple[Setting, ...] = (
    Setting("REDIS_URL", "redis_url", DEFAULT_REDIS_URL, str,
            "Redis holding models, customer records, events and overrides (`redis://`, `rediss://`, or "
            "`unix://PATH` for a Redis on the same host); with `TAILOR_REDIS_CLUSTER=true` any node of the cluster"),
    Setting("TAILOR_REDIS_CLUSTER", "redis_cluster", "false", _bool,
            "`true`: `REDIS_URL` names a node of a Redis Cluster (self-hosted or managed, `rediss://` and passwords "
            "included); every client of the service and of the `tailor` command becomes cluster-aware (pipelines "
            "and scripts grouped per node, SCANs over every primary, redirections and failovers followed)"),
    Setting("TAILOR_API_KEYS", "api_keys", "", parse_api_keys,
            "comma-separated `KEY:SCOPE` pairs, scopes `read` < `marketing` < `admin`", secret=True),
    Setting("TAILOR_PUBLIC_READ", "public_read", "false", _bool,
            "`true`: endpoints of scope `read` answer without a key"),
    Setting("TAILOR_MAX_BODY_BYTES", "max_body_bytes", "1048576", _positive_int,
            "largest accepted request body (413 above)"),
    Setting("TAILOR_REDIS_TIMEOUT_MS", "redis_timeout_ms", "50", _positive_float,
            "socket timeout of request-path Redis reads; past it the answer falls back"),
    Setting("TAILOR_REDIS_CONNECT_TIMEOUT_MS", "redis_connect_timeout_ms", "50", _positive_float,
            "connect timeout of request-path Redis connections"),
    Setting("TAILOR_REDIS_WRITE_TIMEOUT_MS", "redis_write_timeout_ms", "500", _positive_float,
            "socket timeout of event ingestion and admin writes"),
    Setting("TAILOR_REDIS_LOAD_TIMEOUT_S", "redis_load_timeout_s", "10", _positive_float,
            "socket timeout while loading a model version (background thread)"),
    Setting("TAILOR_BREAKER_FAILURES", "breaker_failures", "3", _positive_int,
            "consecutive Redis failures that open the circuit (requests then skip Redis)"),
    Setting("TAILOR_BREAKER_RESET_S", "breaker_reset_s", "1.0", _positive_float,
            "seconds the circuit stays open before a request tries Redis again"),
    Setting("TAILOR_MODEL_POLL_S", "model_poll_s", "0.25", _positive_float,
            "how often each process checks the active model version and item overrides"),
    Setting("TAILOR_CLOCK", "clock", "data", _choice("data", "wall"),
            "`data`: \"now\" is the end of the model's data (or a later event); `wall`: the system clock"),
    Setting("TAILOR_LAPSED_DAYS", "lapsed_days", "180", _positive_float,
            "journey stage `lapsed`: no purchase for this many days"),
    Setting("TAILOR_REPEAT_MIN_ORDERS", "repeat_min_orders", "2", _positive_int,
            "journey stage `repeat`: at least this many orders (below: `first-time buyer`)"),
    Setting("TAILOR_EVENTS_MAXLEN", "events_maxlen", "1000000", _positive_int,
            "cap of the events stream (approximate `MAXLEN ~`, oldest entries trimmed)"),
    Setting("TAILOR_EVENTS_MAX_BATCH", "events_max_batch", "1000", _positive_int,
            "most events accepted in one `POST /v1/events`"),
    Setting("TAILOR_EVENT_DEDUPE_S", "event_dedupe_s", "604800", _positive_int,
            "how long an `event_id` is remembered for idempotency (seconds)"),
    Setting("TAILOR_LIVE_TTL_DAYS", "live_ttl_days", "120", _positive_float,
            "expiry of a customer's live purchases from events (refreshed by each purchase)"),
    Setting("TAILOR_AUDIENCE_REFRESH_S", "audience_refresh_s", "10", _non_negative_float,
            "most seconds an audience (`POST /v1/audiences`) lags behind purchase events: how long a worker reuses "
            "its read of the customers who bought since the model's data (0 = read at every audience)"),
    Setting("TAILOR_SESSION_TTL_S", "session_ttl_s", "172800", _positive_int,
            "expiry of a customer's session interactions (views, carts, clicks)"),
    Setting("TAILOR_SESSION_MAX_ITEMS", "session_max_items", "50", _positive_int,
            "most recent session items used for session recommendations (a session is cut to these at twice as many)"),
    Setting("TAILOR_ANSWER_CACHE_SIZE", "answer_cache_size", "10000", _non_negative_int,
            "finished answers remembered per worker (0 = off), and as many customers' scoring rows for re-ranking "
            "(`/rank`); a customer's are reused only while their data (as read from Redis or the customer cache) "
            "is unchanged, and never with `TAILOR_CLOCK=wall`"),
    Setting("TAILOR_CUSTOMER_CACHE_SIZE", "customer_cache_size", "20000", _non_negative_int,
            "customers whose Redis values each worker keeps, kept exact by Redis' invalidation messages "
            "(`CLIENT TRACKING`, Redis >= 6.2, else off with a warning; 0 = off, read Redis on every request; "
            "always off with `TAILOR_REDIS_CLUSTER=true`, see docs/SCALING.md)"),
    Setting("TAILOR_READ_AHEAD", "read_ahead", "true", _bool,
            "each API worker reads the served version's customers into those two caches in the background when it "
            "starts and when another version becomes active, instead of meeting every customer cold once (bounded "
            "by the caches' sizes; never pushes out what requests stored)"),
    Setting("TAILOR_BIND", "bind", "127.0.0.1:8000", str, "`tailor serve` listen address"),
    Setting("TAILOR_WORKERS", "workers", "0", _non_negative_int,
            "gunicorn worker processes (0 = 2 x cores + 1)"),
    Setting("TAILOR_WORKER_CLASS", "worker_class", "gthread", str, "gunicorn worker class (`gthread` or `sync`)"),
    Setting("TAILOR_THREADS", "threads", "4", _positive_int, "threads per worker with `gthread`"),
    Setting("TAILOR_WORKER_CONNECTIONS", "worker_connections", "0", _non_negative_int,
            "open connections a `gthread` worker holds before it leaves new ones to the others "
            "(0 = 2 x threads); keeps a few keep-alive clients from all landing on one worker"),
    Setting("TAILOR_LOG_LEVEL", "log_level", "info", str, "log level of the service and gunicorn"),
    Setting("TAILOR_LOG_FORMAT", "log_format", "json", _choice("json", "text"),
            "`json`: one JSON object per line (time, level, logger, message, request_id, ...); `text`: plain"),
    Setting("TAILOR_ACCESS_LOG", "access_log", "true", _bool,
            "one log line per request (method, path, status, duration_ms, request_id)"),
    Setting("TAILOR_METRICS_SCOPE", "metrics_scope", "public", _choice("public", *SCOPES),
            "who may read `GET /metrics`: `public` (no key; restrict it on the network) or a key scope"),
    Setting("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "", str,
            "metric files shared by gunicorn workers (emptied at start; empty = a fresh temporary directory)"),
    Setting("TAILOR_MODEL_SHARE_DIR", "model_share_dir", "", str,
            "where the API processes of one host share the model's large arrays as memory-mapped files (one "
            "copy in memory instead of one per worker); empty = `tailor serve` / gunicorn make a fresh one "
            "(in `/dev/shm` where it exists, removed at exit)"),
    Setting("TAILOR_KEEP_VERSIONS", "keep_versions", "3", _positive_int,
            "`tailor publish` / `retrain`: model versions kept in Redis for rollback (never the active one)"),
    Setting("TAILOR_RETRAIN_TOLERANCE", "retrain_tolerance", "0.02", _fraction,
            "`tailor retrain`: allowed relative NDCG drop of the candidate vs the active model"),
)


@dataclass(frozen=True)
class Settings:
    """Parsed settings; build with ``Settings.load(overrides)``."""

    redis_url: str
    redis_cluster: bool
    api_keys: dict[str, str] = field(repr=False)
    public_read: bool
    max_body_bytes: int
    redis_timeout_ms: float
    redis_connect_timeout_ms: float
    redis_write_timeout_ms: float
    redis_load_timeout_s: float
    breaker_failures: int
    breaker_reset_s: float
    model_poll_s: float
    clock: str
    lapsed_days: float
    repeat_min_orders: int
    events_maxlen: int
    events_max_batch: int
    event_dedupe_s: int
    live_ttl_days: float
    audience_refresh_s: float
    session_ttl_s: int
    session_max_items: int
    answer_cache_size: int
    customer_cache_size: int
    read_ahead: bool
    bind: str
    workers: int
    worker_class: str
    threads: int
    worker_connections: int
    log_level: str
    log_format: str
    access_log: bool
    metrics_scope: str
    prometheus_multiproc_dir: str
    model_share_dir: str
    keep_versions: int
    retrain_tolerance: float

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Environment (``os.environ`` by default) overlaid with ``overrides`` (same names, any value type)."""
        env = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {s.env for s in SETTINGS})
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = overrides.get(setting.env, env.get(setting.env, setting.default))
            if not isinstance(raw, str):
                raw = ",".join(f"{k}:{v}" for k, v in raw.items()) if isinstance(raw, dict) else str(raw)
            values[setting.attr] = setting.value(raw)
        return cls(**values)

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets hidden (for logs and `tailor config`)."""
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.attr)
            if setting.secret:
                value = f"{len(value)} key(s): " + ", ".join(sorted(set(value.values()))) if value else "none"
            elif setting.env == "REDIS_URL":
                value = mask_url(value)
            out[setting.env] = value
        return out


#: ``TAILOR_*`` variables that are read elsewhere than here: not settings, and not typos either.
OTHER_VARIABLES = {
    "TAILOR_VAR_DIR": "`tailor demo`: where its Redis and models live",
    "TAILOR_SPARK_PARTITIONS": "`--engine spark`: partitions of the purchases",
    "TAILOR_SPARK_LOG_LEVEL": "`--engine spark`: Spark's log level",
    "TAILOR_SPARK_DRIVER_MEMORY": "`--engine spark`: the driver's memory",
    "TAILOR_IMAGE": "docker-compose.yml", "TAILOR_DATA_DIR": "docker-compose.yml",
    "TAILOR_DATA_FILE": "docker-compose.yml", "TAILOR_DATA_FORMAT": "docker-compose.yml",
    "TAILOR_API_REPLICAS": "docker-compose.yml", "TAILOR_SHM_SIZE": "docker-compose.yml",
    "TAILOR_RETRAIN_EVERY_HOURS": "docker-compose.yml",
    "TAILOR_CONTRACT_EXAMPLES": "tests", "TAILOR_UPDATE_SCREENSHOT": "tests",
}
OTHER_PREFIXES = ("TAILOR_BENCH_",)  # bench/


def is_known_variable(name: str) -> bool:
    """Whether something in the project reads the environment variable ``name`` (a setting or not)."""
    return name.startswith(OTHER_PREFIXES) or name in OTHER_VARIABLES or any(s.env == name for s in SETTINGS)


def unrecognised_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``TAILOR_*`` environment variable that nothing reads, naming the setting it most likely
    meant: a misspelt variable is otherwise ignored without a word and its setting keeps the default (with
    ``TAILOR_REDIS_URL`` for ``REDIS_URL``, every command talks to the Redis on 127.0.0.1:6379)."""
    env = os.environ if environ is None else environ
    settings = [s.env for s in SETTINGS]
    warnings = []
    for name in sorted(env):
        if not name.startswith("TAILOR_") or is_known_variable(name):
            continue
        bare = name.removeprefix("TAILOR_")
        close = [bare] if is_known_variable(bare) else difflib.get_close_matches(name, settings, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{name} is not a Tailor setting and is ignored{hint}")
    return warnings


def setting_value(env: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting, parsed (for the CLI, which must not fail on an unrelated variable); ``ConfigError``."""
    setting = next((s for s in SETTINGS if s.env == env), None)
    if setting is None:
        raise ConfigError(f"unknown setting: {env}")
    return setting.value((os.environ if environ is None else environ).get(env, setting.default))


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``: safe for messages, logs and `tailor config`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def markdown_table() -> str:
    """The README table of every environment variable."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        lines.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)


assert {f.name for f in fields(Settings)} == {s.attr for s in SETTINGS}, "SETTINGS and Settings disagree"
