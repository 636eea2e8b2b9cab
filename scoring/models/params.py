"""Declared hyper-parameters: one table per algorithm that the constructor, the CLI and the docs share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from scoring.models.base import Recommender


@dataclass(frozen=True)
class Param:
    """A tunable parameter: its default, its type for CLI parsing, a one-line help text and, for numbers,
    the range the model can be fitted with (a zero where a count is needed crashed implicit's item-kNN, and
    ALS with no factors ended in a LAPACK error)."""

    name: str
    default: Any
    type: type
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float = 0.0  # numbers: the smallest value allowed
    maximum: float | None = None  # numbers: the largest value allowed (None: no bound)
    exclusive_minimum: bool = False  # numbers: ``minimum`` itself is not allowed

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
        if self.type in (int, float):
            self._check_range(value)
        return value

    def _check_range(self, value: float) -> None:
        low = f"above {self.minimum:g}" if self.exclusive_minimum else f"at least {self.minimum:g}"
        span = low if self.maximum is None else f"{low} and at most {self.maximum:g}"
        below = value <= self.minimum if self.exclusive_minimum else value < self.minimum
        if not math.isfinite(value) or below or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"{self.name} must be {span}, got {value!r}")


#: A weight or decay factor in [0, 1].
UNIT = {"maximum": 1.0}
#: A count of things the model needs at least one of (factors, neighbours, epochs, baskets).
AT_LEAST_ONE = {"minimum": 1}
#: A penalty or step that must not be zero.
POSITIVE = {"exclusive_minimum": True}


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
