"""User plugins: modules named in `ROTATION_HARNESS_PLUGINS` (comma-separated) are imported in every process
that loads or trains a suite, so estimators and model families registered there (README "Adding an
estimator") are known to `run-suite` itself and to each of its `--jobs` workers.
"""
from __future__ import annotations

import importlib
import os

PLUGINS_VARIABLE = "ROTATION_HARNESS_PLUGINS"


class PluginError(ImportError):
    """A module named in ROTATION_HARNESS_PLUGINS could not be imported."""


def plugin_modules() -> list[str]:
    """The module names listed in ROTATION_HARNESS_PLUGINS, in order, blanks dropped."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def import_plugins() -> list[str]:
    """Import every plugin module (a module already imported is not run again); return their names.

    A module that fails to import raises PluginError naming the variable, the module and the fix.
    """
    names = plugin_modules()
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise PluginError(
                f"{PLUGINS_VARIABLE}={os.environ[PLUGINS_VARIABLE]!r}: cannot import plugin module {name!r} "
                f"({error}). Put the folder that holds it on PYTHONPATH, or remove it from "
                f"{PLUGINS_VARIABLE}.") from error
    return names
