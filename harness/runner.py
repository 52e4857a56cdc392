"""Execute one run spec into its folder: lock, decide skip/resume/rerun, train, write one record.

Every executor (local, process pool, SLURM) calls `execute_run`, so records are the same whichever runs them.
A failing run writes status `error` with its traceback (or `diverged` with the step) and never raises, so
the other runs of a suite go on. What a rerun does with each status is RunStatus's (harness/status.py):
results (`finished`, `diverged`) are kept unless --force; every other run resumes from its checkpoint if it
has one; --force deletes the checkpoint and starts from scratch.

In a data-parallel SLURM job (several tasks, README "Several GPUs and nodes") every task calls `execute_run`:
rank 0 decides and writes the record as above and tells the other ranks whether to train; they train with
it and write nothing.
"""
from __future__ import annotations

import getpass
import logging
import platform
import socket
import subprocess
import traceback
from datetime import datetime, timezone
from pathlib import Path

import estimators

from . import distributed, store
from .status import RunStatus
from .suite import RunSpec
from .train import train_run

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict:
    """Where and with what a record was made: git commit, package versions, host, fused-backward mode."""
    import numpy
    import torch

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {
        "git_commit": commit, "git_dirty": dirty, "host": socket.gethostname(), "user": getpass.getuser(),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "fused_backward": estimators.fused_backward_mode(),
    }


def mark_run(spec: RunSpec, out: str | Path, status: RunStatus, **fields) -> dict:
    """Write the record of a run that ended outside `execute_run`'s own process (a SLURM job that was
    cancelled or timed out, a pool worker killed by a signal): the previous record's fields are kept, the
    status and `fields` (e.g. ``traceback``, ``signal``, ``slurm_job_id``) are set. The runner is the only
    writer of records; executors call this instead of writing one themselves."""
    directory = store.run_dir(out, spec.suite, spec.run_id)
    record = _previous_record(directory)[0] or {
        "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": spec.profile,
        "config": spec.config.resolved, "attempts": 0, "requeues": 0,
    }
    record.update(status=RunStatus(status).value, finished=_now(), **fields)
    store.write_json(directory / store.RECORD, record)
    return record


def run_status(out: Path, spec: RunSpec) -> RunStatus | None:
    """The run's status as its record says (None: never started; `damaged`: the record cannot be read)."""
    try:
        record = store.load_record(store.run_dir(out, spec.suite, spec.run_id))
    except store.DamagedRecord as damage:
        logger.warning("%s", damage)
        return RunStatus.DAMAGED
    return RunStatus(record["status"]) if record else None


def _previous_record(directory: Path) -> tuple[dict | None, bool]:
    """The run's record before it is rewritten, and whether it was damaged: a damaged one is logged, copied
    to record.json.damaged and taken as none (the run is rerun, from its checkpoint if it has one)."""
    try:
        return store.load_record(directory), False
    except store.DamagedRecord as damage:
        kept = store.keep_damaged_record(directory)
        logger.warning("%s; kept as %s", damage, kept)
        return None, True


def execute_run(spec: RunSpec, out: str | Path, force: bool = False, progress: bool = True,
                extra: dict | None = None, should_stop=None) -> dict | None:
    """Run `spec` unless its record holds a result (`finished`, `diverged`: returned as it is) or another
    process holds the run (None); return its new record. Anything else resumes from the run's checkpoint
    if there is one; `force` reruns results too, from scratch. `extra` is merged into the record (e.g. the
    SLURM job id); `should_stop` is passed to train_run (preemption). A rank other than 0 of a process group
    trains when rank 0 does and returns None."""
    directory = store.run_dir(out, spec.suite, spec.run_id)
    if not distributed.place().main:
        if distributed.share():
            train_run(spec.config, directory, progress=False, should_stop=should_stop)
        return None
    with store.RunLock(directory) as lock:
        if not lock.acquired:
            distributed.share(False)
            return None
        previous, damaged = _previous_record(directory)
        previous = previous or {}
        if not force and previous and RunStatus(previous["status"]).is_result:
            distributed.share(False)
            return previous
        if force:
            (directory / store.CHECKPOINT).unlink(missing_ok=True)
        record = {
            "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": spec.profile,
            "config": spec.config.resolved, "status": RunStatus.RUNNING.value, "started": _now(), "step": None,
            "resumed": (directory / store.CHECKPOINT).exists(),
            "attempts": previous.get("attempts", 0) + 1, "requeues": previous.get("requeues", 0),
            "provenance": provenance(), **(extra or {}),
        }
        if damaged:
            record["damaged_record"] = store.DAMAGED_RECORD
        store.write_json(directory / store.RECORD, record)
        distributed.share(True)
        label = " ".join(f"{k}={v}" for k, v in spec.label.items())
        try:
            result = train_run(spec.config, directory, progress=progress, label=label, should_stop=should_stop)
        except Exception:  # noqa: BLE001 — any failure is recorded, the suite goes on
            record.update(status=RunStatus.ERROR.value, traceback=traceback.format_exc(), finished=_now())
        else:
            record.update(status=result.status.value, step=result.step, metrics=result.metrics,
                          notes=result.notes, finished=_now())
            if result.diverged_at is not None:
                record["diverged_at"] = result.diverged_at
        store.write_json(directory / store.RECORD, record)
        return record
