"""A train request: which model, with which settings, on which scenario. One object for the CLI, a background job
(which reads it back from the registry by job id), the bench, the speed check and the dashboard's Train form;
`check` refuses a request that cannot work before any run or job exists.

Settings are typed by the model's defaults: `parse_settings` reads KEY=VALUE text as the default's type (a switch
as true/false, yes/no or 1/0), so `--set dim=abc` is refused with the setting's name instead of failing later.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import scenario as scenarios
from . import text
from .errors import CrossLensError
from .models import MODELS
from .store import open_workspace

SWITCH = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class TrainRequest:
    source: tuple[str, ...]
    target: str
    model: str
    seed: int = 0
    cold_fraction: float = 0.2
    epochs: int | None = None       # at most this many (None: the model's own setting)
    settings: dict = field(default_factory=dict)
    sampled: int | None = None      # rank against this many random negatives instead of every target item
    maps: bool = True               # embedding maps once the run is stored (models with an item space)

    def __post_init__(self):
        source = self.source.split(",") if isinstance(self.source, str) else self.source
        object.__setattr__(self, "source", tuple(s.strip() for s in source if s.strip()))
        object.__setattr__(self, "settings", dict(self.settings or {}))

    def model_settings(self) -> dict:
        return {**self.settings, **({"epochs": self.epochs} if self.epochs is not None else {})}

    def check(self, workspace=None):
        """(scenario spec, unfitted model) of a request that can work, or a CrossLensError saying what to fix."""
        for name, value in (("epochs", self.epochs), ("sampled", self.sampled)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise CrossLensError(f"{name} must be a whole number of at least 1, got {value!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise CrossLensError(f"seed must be a whole number of at least 0, got {self.seed!r}.")
        spec = scenario_spec(workspace, self.source, self.target, self.seed, self.cold_fraction)
        if "encoder" in self.settings:
            check_encoder(self.settings["encoder"], open_workspace(workspace).root)
        return spec, make_model(self.model, self.model_settings(), self.seed)

    def to_dict(self) -> dict:
        return {**asdict(self), "source": list(self.source)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainRequest":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def make_model(name: str, settings: dict | None = None, seed: int = 0):
    """A model from its name and settings; its own seed follows the scenario's unless set."""
    if name not in MODELS:
        raise CrossLensError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}.")
    settings = dict(settings or {})
    if "seed" in MODELS[name].defaults:
        settings.setdefault("seed", seed)
    if "epochs" not in MODELS[name].defaults:
        settings.pop("epochs", None)  # pop and itemknn are fitted in closed form
    try:
        return MODELS[name](**settings)
    except ValueError as err:
        raise CrossLensError(str(err)) from None


def scenario_spec(workspace, source: list[str] | str, target: str, seed: int = 0, cold_fraction: float = 0.2) -> dict:
    """The spec of a scenario on the workspace's current dataset versions, after checking the request."""
    store = open_workspace(workspace)
    source = [source] if isinstance(source, str) else list(source)
    if not source:
        raise CrossLensError("name at least one source domain, like --source arts.")
    if target in source:
        raise CrossLensError(f"'{target}' is both source and target; the target must be a different domain.")
    if not 0 <= cold_fraction < 1:
        raise CrossLensError(f"cold fraction must be in [0, 1), got {cold_fraction}.")
    versions = {d: store.require_dataset(d)["version"] for d in [target, *source]}
    return scenarios.scenario_spec(source, target, seed, cold_fraction, versions)


def check_encoder(name, workspace_root: Path) -> None:
    """A text encoder is the bundled one or a model folder inside the workspace: a request names no other path
    on the machine, and learns nothing of what exists outside the workspace."""
    if name in text.BUNDLED:
        return
    root = Path(workspace_root).resolve()
    if not isinstance(name, str) or not Path(name).expanduser().resolve().is_relative_to(root):
        raise CrossLensError(f"encoder must be '{text.DEFAULT_ENCODER}' (the bundled all-MiniLM-L6-v2) or a "
                             f"sentence-transformers model folder inside the workspace, like "
                             f"{root / 'encoders' / 'NAME'}; got {name!r}.")


def parse_settings(pairs: list[str] | None, model: str | None = None) -> dict:
    """['dim=32', 'lr=0.01'] -> {'dim': 32, 'lr': 0.01}. With a model, each value is read as its default's type
    (a setting whose default is None, chosen on validation when unset, as a number); without one, as a whole
    number, else a number, else text."""
    defaults = MODELS[model].defaults if model in MODELS else {}
    settings = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CrossLensError(f"setting '{pair}' is not KEY=VALUE; write it like --set dim=32.")
        settings[key] = _typed(key, text.strip(), defaults[key]) if key in defaults else _guess(text.strip())
    return settings


def _typed(key: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() not in SWITCH:
            raise CrossLensError(f"setting {key} is a switch: write {key}=true or {key}=false, not '{text}'.")
        return SWITCH[text.lower()]
    if isinstance(default, str):
        return text
    kind, cast = ("a whole number", int) if isinstance(default, int) else ("a number", float)
    try:
        return cast(text)
    except ValueError:
        raise CrossLensError(f"setting {key} must be {kind}, like {key}={default if default is not None else 1}; "
                             f"got '{text}'.") from None


def _guess(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
