"""WSGI entry point: ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``."""

from __future__ import annotations

from scoring.threads import pin_env_threads

pin_env_threads(1, openmp=True)

from service import create_app  # noqa: E402 - thread pools must be pinned before numpy is imported

app = create_app()
