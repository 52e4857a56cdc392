"""Statistics over seeds: the mean with its 95% t-interval, and paired comparisons of two approaches run with
the same seeds (a paired t-test and the t-interval of the paired difference).

A paired difference's interval excludes zero exactly when the paired t-test gives p < 0.05, so the † of the
tables and the agreement verdicts (verdicts.py) read the same evidence.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .formatting import isnan

CONFIDENCE = 0.95
ALPHA = 0.05  # = 1 - CONFIDENCE


def mean_ci(values) -> tuple[float, float | None, int]:
    """(mean, half-width of the 95% t-interval (scipy.stats.t.interval), n) of the finite values; the
    half-width is None when n < 2."""
    from scipy import stats

    data = np.asarray([float(v) for v in values if not isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return float("nan"), None, 0
    mean = float(np.mean(data))
    if n < 2:
        return mean, None, n
    sem = float(stats.sem(data))
    if sem == 0:
        return mean, 0.0, n
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
    return mean, float(high - low) / 2.0, n


def common_seeds(a: dict, b: dict) -> list:
    """The seeds both {seed: value} maps measured (finite values), sorted."""
    return sorted(s for s in a if s in b and not isnan(a[s]) and not isnan(b[s]))


def paired_p(a: dict, b: dict) -> tuple[float | None, int]:
    """Paired t-test (scipy.stats.ttest_rel) of two {seed: value} maps over their common seeds:
    (p-value or None, number of pairs). None with fewer than 2 pairs or when the test is undefined."""
    from scipy import stats

    seeds = common_seeds(a, b)
    if len(seeds) < 2:
        return None, len(seeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return (None if math.isnan(p) else p), len(seeds)


@dataclass(frozen=True)
class PairedDifference:
    """a − b over the seeds both measured: the mean and its 95% t-interval (None with fewer than 2 seeds)."""

    seeds: tuple
    mean: float
    low: float | None
    high: float | None

    @property
    def n(self) -> int:
        return len(self.seeds)

    def sign(self) -> int:
        """+1 when the interval lies above zero, -1 below, 0 when it holds zero or there is none."""
        if self.low is None or self.high is None:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def paired_difference(a: dict, b: dict) -> PairedDifference:
    """The paired difference a − b of two {seed: value} maps over their common seeds."""
    seeds = common_seeds(a, b)
    mean, half, _ = mean_ci([a[s] - b[s] for s in seeds])
    if half is None:
        return PairedDifference(tuple(seeds), mean, None, None)
    return PairedDifference(tuple(seeds), mean, mean - half, mean + half)
