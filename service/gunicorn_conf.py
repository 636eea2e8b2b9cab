"""gunicorn settings of the API (``gunicorn -c python:service.gunicorn_conf service.wsgi:app``).

Read from the same environment variables as the service (see ``settings``): ``TAILOR_BIND``,
``TAILOR_WORKERS`` (0 = 2 x cores + 1), ``TAILOR_WORKER_CLASS``, ``TAILOR_THREADS``,
``TAILOR_WORKER_CONNECTIONS``, ``TAILOR_LOG_LEVEL``.
BLAS/OpenMP pools are pinned to one thread per worker before numpy loads: parallelism comes from the
worker processes, and a BLAS pool per worker would oversubscribe the cores.

Metrics: ``on_starting`` (in the master, before any worker exists) points ``PROMETHEUS_MULTIPROC_DIR`` at
an emptied directory (a fresh temporary one when unset), so every worker writes its metric files there and
``GET /metrics`` adds them up; ``child_exit`` drops a dead worker's live gauges. gunicorn's own log lines
use the service's formatter (``TAILOR_LOG_FORMAT``), with secrets redacted.
"""

from __future__ import annotations

import gc
import glob
import os
import shutil
import tempfile
from typing import Any

from gunicorn.glogging import Logger

from scoring.threads import pin_env_threads
from service.app import server_errors
from service.app.limits import (
    GUNICORN_LIMIT_REQUEST_FIELD_SIZE,
    GUNICORN_LIMIT_REQUEST_FIELDS,
    GUNICORN_LIMIT_REQUEST_LINE,
)
from settings import Settings

pin_env_threads(1, openmp=True)
# Requests gunicorn refuses itself (malformed, or past the limits below) are answered in the API's JSON
# error envelope, like everything the app answers; the workers are forked from this process.
server_errors.install()

_settings = Settings.load()


def default_workers() -> int:
    """2 x cores + 1: workers wait on Redis part of the time, so a few more than cores keeps CPUs busy."""
    return 2 * (os.cpu_count() or 1) + 1


bind = _settings.bind
workers = _settings.workers or default_workers()
worker_class = _settings.worker_class
threads = _settings.threads if worker_class == "gthread" else 1
# gthread workers race for new connections on the shared socket, and one worker often wins them all: with
# 16 keep-alive connections (a load balancer's pool, a benchmark) all on one worker, one core serves
# everything (measured: 580 instead of 2,000-2,300 basket req/s). A cap per worker spreads them.
worker_connections = _settings.worker_connections or 2 * threads
keepalive = 5
# Above the API's own limits (service.app.limits), so that the app answers over-limit requests with its own
# messages; beyond these gunicorn answers (in the same JSON envelope), and a reverse proxy should refuse
# such requests first.
limit_request_line = GUNICORN_LIMIT_REQUEST_LINE
limit_request_fields = GUNICORN_LIMIT_REQUEST_FIELDS
limit_request_field_size = GUNICORN_LIMIT_REQUEST_FIELD_SIZE
timeout = 30
graceful_timeout = 10
loglevel = _settings.log_level
accesslog = None
errorlog = "-"


class ErrorOnlyLogger(Logger):
    """gunicorn's logger without gunicorn's access line unless ``accesslog`` asks for one.

    The service writes its own access line (``tailor.access``, with the request id). gunicorn builds its
    line (a dict of ~20 atoms, a LogRecord) for every request whenever ``logconfig_dict`` is set, only to
    drop it: measured as 10-20% of a ``/healthz`` request's CPU under wrk (docs/BENCHMARKS.md, issue 15).
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = ErrorOnlyLogger
proc_name = "tailor-api"
# gunicorn >= 25.1 opens a control socket at one fixed path per user ($XDG_RUNTIME_DIR or ~/.gunicorn/
# gunicorn.ctl): a second server on the host (blue/green, a demo next to tests) takes it over, and whichever
# stops first deletes the other's, so `gunicornc` would steer the wrong server. Tailor is managed by signals
# and its orchestrator; no socket is opened (older gunicorn ignores the setting).
control_socket_disable = True
# Each worker loads the model itself after the fork; nothing heavy is loaded in the arbiter.
preload_app = False


logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"tailor": {"()": f"service.app.logs.{'Json' if _settings.log_format == 'json' else 'Text'}"
                                    "Formatter"}},
    "filters": {"repeats": {"()": "service.app.logs.RepeatLimiter"}},
    "handlers": {"error_console": {"class": "logging.StreamHandler", "formatter": "tailor",
                                   "stream": "ext://sys.stderr", "filters": ["repeats"]}},
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {"gunicorn.error": {"level": _settings.log_level.upper(), "handlers": ["error_console"],
                                   "propagate": False, "qualname": "gunicorn.error"}},
}


#: The model share directory this master made (removed at exit); None when ``TAILOR_MODEL_SHARE_DIR`` was set.
_made_share_dir: str | None = None
SHARE_DIR_PREFIX = "tailor-models-"


def on_starting(server: Any) -> None:
    """Prepare the shared metrics directory before the first worker is forked (workers inherit the env).

    The files of a previous run are removed: their counters would otherwise be added to this run's. Also
    gives the workers a directory to share the model's large arrays in (``TAILOR_MODEL_SHARE_DIR``; a fresh
    one in ``/dev/shm``, which is memory, where it exists).
    """
    global _made_share_dir
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="tailor-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))
    if not os.environ.get("TAILOR_MODEL_SHARE_DIR"):
        memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        _remove_orphaned_share_dirs(memory)
        _made_share_dir = tempfile.mkdtemp(prefix=f"{SHARE_DIR_PREFIX}{os.getpid()}-", dir=memory)
        os.environ["TAILOR_MODEL_SHARE_DIR"] = _made_share_dir


def _remove_orphaned_share_dirs(parent: str) -> None:
    """Share directories of masters that are gone (killed before ``on_exit``): in /dev/shm they hold memory."""
    for path in glob.glob(os.path.join(parent, f"{SHARE_DIR_PREFIX}*-*")):
        pid = os.path.basename(path)[len(SHARE_DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without signalling; another user's process exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        pass
    return True


def on_exit(server: Any) -> None:
    """Remove the model share directory made by ``on_starting`` (the workers have exited)."""
    if _made_share_dir is not None:
        shutil.rmtree(_made_share_dir, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges (the model version it served) must no longer be reported."""
    from service.infrastructure.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Load the active model, start the poller and the customer cache's invalidation tracking before the
    worker takes its first request, and the reading of its customers ahead of their requests (a thread).

    Then freeze what is loaded by now (app, schemas, model lookups: ~150k objects) out of the garbage
    collector's view: a full collection over them stalls a request for ~70 ms, and they live as long as
    the worker anyway. The same after every read-ahead, which adds ~300k more (customers and their rows:
    a full collection over them took 138-157 ms); ``gc.freeze`` only moves lists, so it costs nothing.
    Refcounting still frees what a version switch drops: a switch leaves ~20 objects in reference cycles
    (docs/BENCHMARKS.md 10.10), which frozen are never freed.
    """
    tailor = getattr(worker.wsgi, "extensions", {}).get("tailor")
    if tailor is not None:
        tailor.store.start(wait_s=10.0)
        tailor.repository.customers.start()
        tailor.read_ahead.on_done.append(gc.freeze)
        tailor.read_ahead.start()
    gc.collect()
    gc.freeze()
