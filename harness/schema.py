"""The one validator of settings: every section of a suite, family params, dataset and estimator params.

A group of settings is a dataclass; each field is one setting. Its type hint says which values it takes
(``int``, ``float``, ``str``, ``bool``, ``None``, ``Literal[...]`` choices, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``tuple[X, Y]``, ``dict``), and `setting` adds a range, a domain check and a description
in the field's metadata. `check_fields(cls, values)` checks a mapping from a suite file against the class and
returns the converted keyword arguments (a YAML list becomes a tuple where the hint says tuple, an int a
float where it says float) with every problem found, each naming its key and the fix.

Closest-name hints come from `estimators.registry.closest`, the one "did you mean" helper of the project.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, NamedTuple

from estimators.registry import closest


def join_key(prefix: str, key: str) -> str:
    """A key path: "training" + "steps" -> "training.steps", "report.figures" + "[0]" -> "report.figures[0]"."""
    if not prefix or not key:
        return prefix or key
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


class Problem(NamedTuple):
    """One problem: `key` is the key path below the checked mapping ("" for the mapping itself)."""

    key: str
    message: str


@dataclass(frozen=True)
class Range:
    """The values a number (or each number of a list) may take."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self) -> str:
        low, high = self.low, self.high
        if high is None:
            if self.low_open:
                return "positive" if low == 0 else f"greater than {low}"
            return f"at least {low}"
        if low is None:
            return f"less than {high}" if self.high_open else f"at most {high}"
        if self.low_open and self.high_open:
            return f"strictly between {low} and {high}"
        if not (self.low_open or self.high_open):
            return f"between {low} and {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


#: A domain check of one setting's value: the problems it finds (key "" for the setting itself, or a key
#: below it). It runs before the type check; when it finds a problem, the type check is skipped.
Check = Callable[[Any], Iterable[Problem]]


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | Any = MISSING, at_least=None, above=None,
            at_most=None, below=None, check: Check | None = None, expects: str | None = None,
            doc: str = "") -> Any:
    """A dataclass field for one setting: default (none: required), range, domain check, description.

    `expects` replaces the description generated from the type hint in messages (e.g. "a list of shell
    lines"); `doc` is what the setting means (README "Suite files" tables are checked against it).
    """
    metadata: dict[str, Any] = {"doc": doc}
    if at_least is not None or above is not None or at_most is not None or below is not None:
        metadata["range"] = Range(above if above is not None else at_least, below if below is not None else at_most,
                                  above is not None, below is not None)
    if check is not None:
        metadata["check"] = check
    if expects is not None:
        metadata["expects"] = expects
    return field(default=default, default_factory=factory, metadata=metadata)


# -- types ------------------------------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def describe(hint) -> str:
    """What a value of type `hint` looks like in a suite file, e.g. "an integer or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value",
              dict: "a mapping", list: "a list", tuple: "a list"}
    if hint in simple:
        return simple[hint]
    if origin is dict:
        return "a mapping"
    if origin in (list, tuple):
        items = args[:1] if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args
        if origin is tuple and items is args and len(set(args)) == 1:
            return f"a list of {len(args)} {_PLURALS.get(args[0], 'values')}"
        if len(set(items)) == 1:
            return f"a list of {_PLURALS.get(items[0], 'values')}"
        return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
    raise TypeError(f"unsupported setting type {hint!r}")


def convert(value, hint) -> tuple[bool, Any]:
    """(whether `value` fits `hint`, the value converted to it: tuple for tuple hints, float for float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if hint is type(None) or hint is None:
        return value is None, None
    if origin in (typing.Union, types.UnionType):
        for option in args:
            fits, converted = convert(value, option)
            if fits:
                return True, converted
        return False, value
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in args), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return (True, int(value)) if _is_int(value) else (False, value)
    if hint is float:
        return (True, float(value)) if _is_number(value) else (False, value)
    if hint is str:
        return (True, os.fspath(value)) if isinstance(value, (str, os.PathLike)) else (False, value)
    if hint is dict or origin is dict:
        return isinstance(value, Mapping), (dict(value) if isinstance(value, Mapping) else value)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        if not args:
            items = list(value)
        else:
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    return False, value
                hints = args
            else:
                hints = (args[0],) * len(value)
            converted = [convert(item, item_hint) for item, item_hint in zip(value, hints)]
            if not all(fits for fits, _ in converted):
                return False, value
            items = [item for _, item in converted]
        return True, (tuple(items) if tuple in (hint, origin) else items)
    raise TypeError(f"unsupported setting type {hint!r}")


def _numbers_in(value) -> list:
    if _is_number(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if _is_number(item)]
    return []


# -- messages ---------------------------------------------------------------------------------------------

def did_you_mean(name, valid: Iterable[str], label: str = "Valid") -> str:
    """" Did you mean 'y'? Valid: ..." for a `name` that is not one of `valid`."""
    valid = sorted(map(str, valid))
    hint = closest(name, valid)
    return (f" Did you mean {hint!r}?" if hint else "") + f" {label}: {', '.join(valid) or '(none)'}"


def unknown_name(what: str, name, valid: Iterable[str]) -> str:
    """"unknown <what> 'x'. Did you mean 'y'? Valid keys|names: ..."."""
    return f"unknown {what} {name!r}." + did_you_mean(name, valid, "Valid keys" if what == "key" else "Valid names")


def got(value) -> str:
    return f"got {value!r} ({type(value).__name__})"


# -- the validator ----------------------------------------------------------------------------------------

def check_value(f: dataclasses.Field, hint, value) -> tuple[list[Problem], Any]:
    """The problems of one setting's value (keys relative to the setting) and the converted value."""
    check = f.metadata.get("check")
    if check is not None:
        problems = list(check(value))
        if problems:
            return problems, value
    fits, converted = convert(value, hint)
    if not fits:
        if typing.get_origin(hint) is Literal or Literal in map(typing.get_origin, typing.get_args(hint)):
            choices = [c for option in (hint, *typing.get_args(hint)) if typing.get_origin(option) is Literal
                       for c in typing.get_args(option)]
            if isinstance(value, str):
                suggestion = closest(value, [str(c) for c in choices])
                return [Problem("", f"{value!r} is not one of {', '.join(map(str, choices))}"
                                + (f"; did you mean {suggestion!r}?" if suggestion else ""))], value
        expected = f.metadata.get("expects") or describe(hint)
        return [Problem("", f"expected {expected}, {got(value)}")], value
    allowed = f.metadata.get("range")
    if allowed is not None and not all(allowed.holds(number) for number in _numbers_in(converted)):
        return [Problem("", f"must be {allowed.text()}, got {value!r}")], value
    return [], converted


def check_fields(cls, values) -> tuple[dict, list[Problem]]:
    """Check a mapping of settings against the dataclass `cls`: unknown keys (with the closest valid one),
    missing required keys, types, choices, ranges and domain checks. Returns (keyword arguments for `cls`,
    converted; every problem). Cross-field rules stay with the caller (e.g. a family's check_params)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(values, Mapping):
        return {}, [Problem("", f"expected a mapping with keys {', '.join(fields) or '(none)'}, {got(values)}")]
    hints = typing.get_type_hints(cls)
    kwargs: dict = {}
    problems: list[Problem] = []
    for key, value in values.items():
        if key not in fields:
            problems.append(Problem(str(key), unknown_name("key", key, fields)))
            continue
        found, kwargs[key] = check_value(fields[key], hints[key], value)
        problems.extend(Problem(join_key(str(key), p.key), p.message) for p in found)
    for key, f in fields.items():
        if key not in values and f.default is MISSING and f.default_factory is MISSING:
            problems.append(Problem(key, f"missing: this setting is required ({describe(hints[key])})"))
    return kwargs, problems


def _as_yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(list(value) if isinstance(value, tuple) else value)


def markdown_table(cls) -> str:
    """The settings of `cls` as a Markdown table: key, type, default, range, meaning (README "Suite files")."""
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | range | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = "required" if f.default is MISSING else f"`{_as_yaml(f.default)}`"
        allowed = f.metadata.get("range")
        rows.append(f"| `{f.name}` | {f.metadata.get('expects') or describe(hints[f.name])} | {default} | "
                    f"{allowed.text() if allowed else ''} | {f.metadata.get('doc', '')} |")
    return "\n".join(rows)
