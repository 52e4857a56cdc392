"""The estimator registry: one name per gradient estimator, looked up by `get(name, **params)`."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import typing
from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    """Class decorator: make an estimator available as `estimators.get(name)`."""

    def decorate(cls):
        if name in _REGISTRY:
            raise ValueError(f"estimator {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def names() -> list[str]:
    """All registered estimator names, sorted."""
    return sorted(_REGISTRY)


def closest(name: str, choices) -> str | None:
    """The closest valid choice to a misspelt `name`, or None."""
    choices = list(choices)
    strong = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.8)
    if strong:
        return strong[0]
    parts = str(name).split("_")  # a valid prefix of an underscored name: `lr_rate` -> `lr`
    for end in range(len(parts) - 1, 0, -1):
        if "_".join(parts[:end]) in choices:
            return "_".join(parts[:end])
    match = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    return match[0] if match else None


def estimator_class(name: str):
    """The class registered as `name`; an unknown name raises ValueError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = closest(name, _REGISTRY)
        suggestion = f" Did you mean {hint!r}?" if hint else ""
        raise ValueError(
            f"unknown estimator {name!r}.{suggestion} Valid names: {', '.join(names())}"
        ) from None


@functools.lru_cache(maxsize=None)
def params_class(name: str) -> type:
    """The keyword parameters of estimator `name` as a frozen dataclass (field names, type hints and
    defaults from its ``__init__`` signature), so a suite's estimator section is checked like any other."""
    signature = inspect.signature(estimator_class(name).__init__, eval_str=True)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    fields = [(n, p.annotation if p.annotation is not inspect.Parameter.empty else typing.Any,
               dataclasses.field(default=p.default) if p.default is not inspect.Parameter.empty else dataclasses.field())
              for n, p in signature.parameters.items() if n != "self" and p.kind not in variadic]
    return dataclasses.make_dataclass(f"{estimator_class(name).__name__}Params", fields, frozen=True)


def parameter_names(name: str) -> list[str]:
    """The keyword parameters the estimator `name` accepts."""
    return [f.name for f in dataclasses.fields(params_class(name))]


def get(name: str, **params):
    """Build the estimator registered as `name` with its keyword parameters.

    An unknown parameter raises TypeError naming the valid ones.
    """
    cls = estimator_class(name)
    valid = parameter_names(name)
    unknown = [key for key in params if key not in valid]
    if unknown:
        hint = closest(unknown[0], valid)
        suggestion = f" Did you mean {hint!r}?" if hint else ""
        raise TypeError(
            f"estimator {name!r} has no parameter {unknown[0]!r}.{suggestion} "
            f"Valid parameters: {', '.join(valid) or '(none)'}"
        )
    return cls(**params)
