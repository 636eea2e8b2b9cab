"""Declared hyper-parameters: one table per algorithm that the constructor, the CLI and the docs share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from scoring.models.base import Recommender


@dataclass(frozen=True)
class Param:
    """A tunable parameter: its default, its type for CLI parsing and a one-line help text."""

    name: str
    default: Any
    type: type
    help: str
    choices: tuple[Any, ...] | None = None

    @property
    def flag(self) -> str:
        """The command-line spelling (``--half-life`` for ``half_life``)."""
        return "--" + self.name.replace("_", "-")

    def convert(self, value: Any) -> Any:
        """Coerce a value (e.g. a CLI string or a JSON number) to the declared type; None stays None."""
        if value is None:
            return None
        if self.type is bool and isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        value = self.type(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(map(str, self.choices))}, not {value!r}")
        return value


def resolve(declared: tuple[Param, ...], given: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """Defaults overlaid with ``given``; unknown names are an error (a typo must not be silently ignored)."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) for {algorithm}: {', '.join(unknown)}; "
            f"known: {', '.join(by_name) or 'none'}"
        )
    return {p.name: p.convert(given[p.name]) if p.name in given else p.default for p in declared}


class TunableRecommender(Recommender):
    """A recommender whose ``params`` are its declared hyper-parameters, defaults filled in."""

    hyperparameters: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **params: Any) -> None:
        super().__init__(**resolve(self.hyperparameters, params, self.name))
