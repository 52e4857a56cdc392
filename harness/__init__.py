"""Suites → runs → results: config, data, training loop, metrics, executors, store, reports, CLI."""
from .store import load_results

__all__ = ["load_results"]
