"""A user plugin for tests/test_executors.py, loaded through ROTATION_HARNESS_PLUGINS in a run-suite
subprocess and its pool workers (never in the pytest process: it would join every estimator grid there).

`sigkill_on_first_step` is the straight-through estimator, except that its first training call kills its own
process with SIGKILL, as the out-of-memory killer would. If SIGKILL_PLUGIN_WAIT_FOR names a glob pattern, it
first waits (up to a minute) until a file matches it: a sibling run's checkpoint, so that run is mid-way.
"""
from __future__ import annotations

import glob
import os
import signal
import time

from estimators import register
from estimators.ste import StraightThrough


@register("sigkill_on_first_step")
class SigkillOnFirstStep(StraightThrough):
    """Straight-through, but the process that trains with it dies at its first step (SIGKILL)."""

    def transport(self, e, q):
        if e.requires_grad:
            pattern = os.environ.get("SIGKILL_PLUGIN_WAIT_FOR")
            deadline = time.monotonic() + 60
            while pattern and not glob.glob(pattern) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().transport(e, q)
