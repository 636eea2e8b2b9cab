"""gunicorn settings of the API (``gunicorn -c python:service.gunicorn_conf service.wsgi:app``).

Read from the same environment variables as the service (see ``service.config``): ``TAILOR_BIND``,
``TAILOR_WORKERS`` (0 = 2 x cores + 1), ``TAILOR_WORKER_CLASS``, ``TAILOR_THREADS``, ``TAILOR_LOG_LEVEL``.
BLAS/OpenMP pools are pinned to one thread per worker before numpy loads: parallelism comes from the
worker processes, and a BLAS pool per worker would oversubscribe the cores.
"""

from __future__ import annotations

import os
from typing import Any

from service.config import Settings
from training.threads import pin_env_threads

pin_env_threads(1, openmp=True)

_settings = Settings.load()


def default_workers() -> int:
    """2 x cores + 1: workers wait on Redis part of the time, so a few more than cores keeps CPUs busy."""
    return 2 * (os.cpu_count() or 1) + 1


bind = _settings.bind
workers = _settings.workers or default_workers()
worker_class = _settings.worker_class
threads = _settings.threads if worker_class == "gthread" else 1
keepalive = 5
timeout = 30
graceful_timeout = 10
max_requests = 0
loglevel = _settings.log_level
accesslog = None
errorlog = "-"
proc_name = "tailor-api"
# Each worker loads the model itself after the fork; nothing heavy is loaded in the arbiter.
preload_app = False


def post_worker_init(worker: Any) -> None:
    """Load the active model and start the poller before the worker takes its first request."""
    tailor = getattr(worker.wsgi, "extensions", {}).get("tailor")
    if tailor is not None:
        tailor.store.start()
