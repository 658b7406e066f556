"""What a model's settings may be: the type of each one's default, and the range a model declares for it.

A model lists `ranges` {setting: Range}; `check` refuses a value of the wrong type (a whole number where the default
is one, a switch where it is a switch, a finite number where it is a number; None only where the default is None,
which means "chosen on validation") or outside its range, naming the setting and what it may be. Models call it
when they are constructed, so a bad setting is refused before any run or job exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real


@dataclass(frozen=True)
class Range:
    low: float = -math.inf
    high: float = math.inf
    above: bool = False     # the value must be strictly above `low`
    choices: tuple = ()     # text settings: the values allowed

    def holds(self, value) -> bool:
        if self.choices:
            return value in self.choices
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    def words(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low = f"{'above' if self.above else 'at least'} {self.low:g}" if self.low > -math.inf else ""
        high = f"at most {self.high:g}" if self.high < math.inf else ""
        return " and ".join(filter(None, [low, high])) or "any number"


COUNT = Range(1)            # a whole number of at least 1
POSITIVE = Range(0, above=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)      # 0 to 1, both included
SEED = Range(0)


def check(model: str, defaults: dict, ranges: dict, params: dict) -> None:
    """Raise ValueError for the first setting whose value has the wrong type or lies outside its range."""
    for name, value in params.items():
        default, allowed = defaults.get(name), ranges.get(name)
        kind = _kind(default)
        if not _is(kind, value, default is None):
            raise ValueError(f"{model} setting {name} must be {kind}"
                             f"{', or unset to be chosen on validation' if default is None else ''}; got {value!r}")
        if value is not None and allowed is not None and not allowed.holds(value):
            raise ValueError(f"{model} setting {name} must be {allowed.words()}; got {value!r}")


def _kind(default) -> str:
    if isinstance(default, bool):
        return "a switch (true or false)"
    if isinstance(default, Integral):
        return "a whole number"
    if isinstance(default, str):
        return "text"
    return "a finite number"


def _is(kind: str, value, may_be_none: bool) -> bool:
    if value is None:
        return may_be_none
    if kind.startswith("a switch"):
        return isinstance(value, bool) or (isinstance(value, Integral) and value in (0, 1))  # as older runs stored them
    if isinstance(value, bool):  # True is an int to Python, not a number to an analyst
        return False
    if kind == "a whole number":
        return isinstance(value, Integral)
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, Real) and math.isfinite(value)
