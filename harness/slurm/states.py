"""What a SLURM job state means for the run it carried: its record's status, and whether it resumes.

The state is sacct's text as submitit reports it (``job.state``), e.g. ``"CANCELLED by 0"``. Jobs that the
infrastructure ended — out of time, preempted, a failed node, out of memory — are *resumable*: a later
``run-suite`` resubmits them and the run continues from its last checkpoint, at most ``slurm.max_requeues``
times (the record's ``requeues`` counts them, in-job requeues included).
"""
from __future__ import annotations

from ..status import RunStatus

#: SLURM states after which the run resumes from its checkpoint when resubmitted, and the status recorded.
RESUMABLE_STATES: dict[str, RunStatus] = {
    "TIMEOUT": RunStatus.TIMEOUT,
    "DEADLINE": RunStatus.TIMEOUT,
    "PREEMPTED": RunStatus.PREEMPTED,
    "NODE_FAIL": RunStatus.PREEMPTED,
    "OUT_OF_MEMORY": RunStatus.ERROR,
}
#: States of a job that is still queued or running, beyond the ones submitit's ``done()`` waits for.
RUNNING_STATES = ("RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING")

#: Why a job in one of these states ended without a Python traceback (the record's ``traceback``).
_NO_TRACEBACK = {
    "OUT_OF_MEMORY": "the job ran out of memory and SLURM killed it (raise slurm.mem_gb); the run resumes "
                     "from its last checkpoint when resubmitted",
    "NODE_FAIL": "the job's node failed",
    "VANISHED": "the job left the queue and sacct has no record of it (accounting down or purged)",
}


def head(state: str) -> str:
    """The state's first word, upper case (``"CANCELLED by 0"`` → ``"CANCELLED"``)."""
    return (state.split() or ["UNKNOWN"])[0].upper()


def is_resumable(state: str) -> bool:
    return head(state) in RESUMABLE_STATES


def status_for(state: str) -> RunStatus:
    """The status a run gets when its job ended in `state` without the run settling its own record."""
    word = head(state)
    if word in RESUMABLE_STATES:
        return RESUMABLE_STATES[word]
    if word == "CANCELLED":
        return RunStatus.CANCELLED
    return RunStatus.ERROR


def error_detail(state: str) -> str:
    """Why a job in `state` left no Python traceback."""
    word = head(state)
    if word in _NO_TRACEBACK:
        return _NO_TRACEBACK[word]
    if word == "COMPLETED":
        return "the job completed without running the run (its folder was locked by another process)"
    return (f"SLURM ended the job with state {state} and no Python traceback (its process was killed, e.g. "
            f"kill -9, or the job failed to launch)")


def ended_resumable(record: dict | None) -> bool:
    """Whether a record is of a run that the infrastructure interrupted (so it counts against max_requeues):
    its job ended in a resumable state, or the run stopped at a step boundary (preempted/timeout)."""
    if not record:
        return False
    if record.get("status") in (RunStatus.PREEMPTED, RunStatus.TIMEOUT):
        return True
    return record.get("status") != RunStatus.FINISHED and is_resumable(record.get("slurm_state") or "")
