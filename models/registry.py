"""The model-family registry: `get_family(name)`, `family_names()`, and `build_model(model_cfg, estimator)`."""
from __future__ import annotations

import dataclasses

from estimators.registry import closest

_FAMILIES: dict[str, type] = {}


def register_family(cls):
    """Class decorator: make a ModelFamily subclass available by its `family_name`."""
    if cls.family_name in _FAMILIES:
        raise ValueError(f"model family {cls.family_name!r} is registered twice")
    _FAMILIES[cls.family_name] = cls
    return cls


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> type:
    try:
        return _FAMILIES[name]
    except KeyError:
        hint = closest(name, _FAMILIES)
        suggestion = f" Did you mean {hint!r}?" if hint else ""
        raise ValueError(f"unknown model family {name!r}.{suggestion} Valid: {', '.join(family_names())}") from None


def param_fields(family: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(family.Params)}


def build_params(family: type, values: dict):
    """The family's Params dataclass from a dict (unknown keys are refused by harness.suite before this)."""
    return family.Params(**values)


def build_model(model_cfg: dict, estimator):
    """Instantiate the family named by model_cfg["family"] with the remaining keys as its params.

    `model_cfg` is the resolved model section (preset already merged in by harness.suite).
    """
    family = get_family(model_cfg["family"])
    values = {k: v for k, v in model_cfg.items() if k not in ("family", "preset")}
    return family(build_params(family, values), estimator)
