"""The model-family registry: `get_family(name)`, `family_names()`, and `build_model(model, estimator)`."""
from __future__ import annotations

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


def build_model(model, estimator):
    """Instantiate the family of `model` (a validated harness.config.ModelConfig: family name, preset, and
    the family's Params instance with the preset already merged in) around `estimator`."""
    return get_family(model.family)(model.params, estimator)
