"""Run statuses: the one list of what a run's record can say about it, and what each means for a rerun.

`RunStatus` is a `str` enum, so a record stores the plain word (``"finished"``) and compares equal to it.
"""
from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """The status of one run, as written in its record."""

    RUNNING = "running"  # a process holds the run now, or died holding it (resumed from its checkpoint)
    FINISHED = "finished"  # trained and evaluated: a rerun skips it unless --force
    DIVERGED = "diverged"  # a non-finite loss: a result (the same seed diverges again), kept unless --force
    ERROR = "error"  # an exception or a killed worker: a rerun resumes it from its checkpoint
    PREEMPTED = "preempted"  # stopped at a step boundary (SLURM preemption or time-out): resumed
    TIMEOUT = "timeout"  # the scheduler ended the job: resumed
    CANCELLED = "cancelled"  # the job was cancelled: resumed
    DAMAGED = "damaged"  # the record could not be read: kept aside as record.json.damaged, rerun

    def __str__(self) -> str:
        return self.value

    @property
    def is_result(self) -> bool:
        """A status a plain rerun leaves alone (finished, diverged)."""
        return self in (RunStatus.FINISHED, RunStatus.DIVERGED)
