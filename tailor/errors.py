"""What every `tailor` command reports to the user: one-line errors and the exit statuses."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_REJECTED = 3  # retrain: the quality gate kept the active model


class CliError(Exception):
    """A one-line error for the user (``tailor: error: ...``, exit status 2)."""
