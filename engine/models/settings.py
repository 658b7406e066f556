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


@dataclass(frozen=True)
class Space:
    """Where tuning (engine.tune) draws a setting from: low..high (log-scaled for scales such as a learning rate),
    or one of `choices`; its type is its default's."""
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple = ()

    def holds(self, value) -> bool:
        return value in self.choices if self.choices else self.low <= value <= self.high


COMMON_HELP = {  # settings several models share; a model's own `help` says the rest
    "dim": "size of the learned user and item vectors",
    "lr": "learning rate of the optimiser",
    "reg": "L2 penalty on the vectors (larger: simpler factors)",
    "epochs": "at most this many passes over the training data; early stopping may end sooner",
    "patience": "stop after this many validations without a better NDCG@10 on them (the best weights are kept); a "
                "validation ends each epoch, or each part of it where the model has valid_every",
    "batch_size": "training examples per optimiser step",
    "seed": "seeds the initial weights and the sampling (the split has its own seed)",
    "neighbours": "most similar items kept per item in the co-occurrence similarity",
    "encoder": "the sentence encoder of the item texts: 'minilm' (bundled) or a folder inside the workspace",
}

PRESETS = ("quick", "default", "thorough")


def preset(name: str, defaults: dict) -> dict:
    """The settings a preset changes for a model with these defaults: quick trains a quarter of the epochs with
    little patience, thorough twice the epochs with twice the patience; closed-form models have nothing to change."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    if name == "default" or "epochs" not in defaults:
        return {}
    epochs, patience = defaults["epochs"], defaults.get("patience")
    if name == "quick":
        changed = {"epochs": max(1, round(epochs / 4))}
        return changed | ({"patience": min(patience, 2)} if patience else {})
    return {"epochs": 2 * epochs} | ({"patience": 2 * patience} if patience else {})


COUNT = Range(1)            # a whole number of at least 1
POSITIVE = Range(0, above=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)      # 0 to 1, both included
SEED = Range(0)


def check(model: str, defaults: dict, ranges: dict, params: dict) -> None:
    """Raise ValueError for the first setting whose value has the wrong type or lies outside its range."""
    for name, value in params.items():
        default, allowed = defaults.get(name), ranges.get(name)
        words, fits = _type(default)
        if not (fits(value) if value is not None else default is None):
            raise ValueError(f"{model} setting {name} must be {words}"
                             f"{', or unset to be chosen on validation' if default is None else ''}; got {value!r}")
        if value is not None and allowed is not None and not allowed.holds(value):
            raise ValueError(f"{model} setting {name} must be {allowed.words()}; got {value!r}")


def _type(default):
    """(what a value must be, in words; the test of a value that is not None) after the setting's default."""
    if isinstance(default, bool):  # 0 and 1 too: older runs stored switches so
        return "a switch (true or false)", lambda v: isinstance(v, bool) or (isinstance(v, Integral) and v in (0, 1))
    if isinstance(default, str):
        return "text", lambda v: isinstance(v, str)
    if isinstance(default, Integral):  # True is an int to Python, not a number to an analyst
        return "a whole number", lambda v: isinstance(v, Integral) and not isinstance(v, bool)
    return "a finite number", lambda v: isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
