"""``tailor serve``: the API under gunicorn, configured by ``service/gunicorn_conf.py``."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

from scoring.threads import pin_env_threads


def gunicorn_options(bind: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """Every gunicorn setting ``service.gunicorn_conf`` defines, with the command line's overrides applied.

    Taken by name from gunicorn's own list of settings, so a setting added to the module is applied by
    ``tailor serve`` exactly as by ``gunicorn -c python:service.gunicorn_conf`` (a hand-kept list once left
    out ``logger_class``, and every request built gunicorn's access line only to drop it)."""
    from gunicorn.config import KNOWN_SETTINGS

    from service import gunicorn_conf

    options = {setting.name: getattr(gunicorn_conf, setting.name) for setting in KNOWN_SETTINGS
               if hasattr(gunicorn_conf, setting.name)}
    if bind:
        options["bind"] = bind
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        options["workers"] = workers
    options["bind"] = [options["bind"]] if isinstance(options["bind"], str) else options["bind"]
    return options


def serve(bind: str | None = None, workers: int | None = None) -> int:
    """Run gunicorn in this process until it is stopped; returns the exit status."""
    pin_env_threads(1, openmp=True)
    from gunicorn.app.base import BaseApplication

    from settings import ConfigError

    try:
        options = gunicorn_options(bind, workers)
    except (ConfigError, ValueError) as exc:
        print(f"tailor: error: {exc}", file=sys.stderr)
        return 2

    class TailorServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from service.wsgi import app

            return app

    TailorServer().run()
    return 0


def stop_server(process: subprocess.Popen, grace_s: float = 20.0) -> int:
    """Stop a `tailor serve` process as an orchestrator does: SIGTERM (gunicorn finishes its requests), then
    SIGKILL after ``grace_s``; returns its exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
