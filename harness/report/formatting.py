"""Fixed number formatting and small value helpers, so that regenerated reports are byte-identical.

Our numbers: 4 decimals, 1 decimal from 10 up, scientific below 0.01 and from 1e5; percent metrics (the
metrics registry's `percent`) ×100 with 1 decimal. The paper's numbers are printed as the paper prints them.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

from .metrics import metric


def natural_key(text: str) -> list:
    """Sort key that orders 'k=8' before 'k=16'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def isnan(value) -> bool:
    """None or a float NaN (pandas' missing cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def plain(value) -> str:
    """A config value as text: integral floats without '.0' (pandas upcasts ints next to NaN)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def same(a, b) -> bool:
    """Config value equality tolerant of pandas' int → float upcasts and JSON-dumped lists."""
    if isinstance(b, (list, dict)):
        b = json.dumps(b)
    if isnan(a):
        return b is None
    try:
        if isinstance(b, bool) or isinstance(a, (bool, np.bool_)):
            return bool(a) == b and isinstance(b, bool)
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def scale(metric_name: str, value: float) -> float:
    """The value as shown: ×100 for percent metrics."""
    return 100.0 * value if metric(metric_name).percent else value


def _style(metric_name: str, magnitude: float) -> tuple[str, int]:
    """('fixed', decimals) or ('sci', 2) for a shown value of this magnitude."""
    if metric(metric_name).percent:
        return "fixed", 1
    if magnitude == 0:
        return "fixed", 4
    if magnitude < 1e-2 or magnitude >= 1e5:
        return "sci", 2
    return ("fixed", 4) if magnitude < 10 else ("fixed", 1)


def _fmt_with(value: float, style: tuple[str, int]) -> str:
    value = 0.0 if value == 0 else float(value)  # no "-0.0000"
    kind, digits = style
    text = f"{value:.{digits}e}" if kind == "sci" else f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def fmt_value(value, metric_name: str = "") -> str:
    """One of our numbers as printed in the tables ('—' when missing)."""
    if isnan(value):
        return "—"
    shown = scale(metric_name, float(value))
    return _fmt_with(shown, _style(metric_name, abs(shown)))


def fmt_mean_ci(mean, half, metric_name: str = "") -> str:
    """'mean ± half' with the half-width in the mean's style; the mean alone when there is no interval."""
    if isnan(mean):
        return "—"
    shown = scale(metric_name, float(mean))
    style = _style(metric_name, abs(shown))
    text = _fmt_with(shown, style)
    if isnan(half):
        return text
    return f"{text} ± {_fmt_with(scale(metric_name, float(half)), style)}"


def fmt_interval(mean: float, low: float, high: float, metric_name: str = "") -> str:
    """'mean [low, high]' in one style, that of the largest magnitude of the three."""
    shown = [scale(metric_name, float(v)) for v in (mean, low, high)]
    style = _style(metric_name, max(abs(v) for v in shown))
    mean_text, low_text, high_text = (_fmt_with(v, style) for v in shown)
    return f"{mean_text} [{low_text}, {high_text}]"


def fmt_paper(value, metric_name: str = "") -> str:
    """A paper number as the paper prints it (usage in %, '—' for not reported)."""
    if value is None:
        return "—"
    if metric(metric_name).percent:
        return f"{100.0 * value:.4g}"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:g}"


def fmt_p(p) -> str:
    if isnan(p):
        return "n/a"
    if p < 1e-4:
        return "<1e-4"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def fmt_ratio(value) -> str:
    return "—" if isnan(value) else f"{value:.3g}×"
