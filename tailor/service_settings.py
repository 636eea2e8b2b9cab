"""The service's settings, read by the commands from the environment as the service reads them, so that a
batch answer (``tailor recommend``, ``tailor audience``) is shaped like the API's: its clock, its session
size, its journey stages."""

from __future__ import annotations

import time
from typing import Any

from tailor.errors import CliError


def setting(env: str) -> Any:
    """One setting, parsed; a bad value is a one-line error naming the variable."""
    from settings import ConfigError, setting_value

    try:
        return setting_value(env)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def clock_now_day() -> float | None:
    """"Now" under ``TAILOR_CLOCK``: the system clock (``wall``), or None for ``data`` (the end of the model's
    data, or a customer's latest event: the caller knows which)."""
    from scoring.history import SECONDS_PER_DAY

    return time.time() / SECONDS_PER_DAY if setting("TAILOR_CLOCK") == "wall" else None
