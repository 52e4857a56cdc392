"""Execute one run spec into its folder: lock, decide skip/resume/retry, train, write one record.

Every executor (local, process pool, SLURM) calls `execute_run`, so records are the same whichever runs them.
A failing run writes status `error` with its traceback (or `diverged` with the step) and never raises, so
the other runs of a suite go on.
"""
from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import estimators

from . import store
from .status import RunStatus
from .suite import RunSpec
from .train import train_run


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
    record = store.read_record(directory) or {
        "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": spec.profile,
        "config": spec.config.resolved, "attempts": 0, "requeues": 0,
    }
    record.update(status=RunStatus(status).value, finished=_now(), **fields)
    store.write_json(directory / store.RECORD, record)
    return record


def run_status(out: Path, spec: RunSpec) -> str | None:
    record = store.read_record(store.run_dir(out, spec.suite, spec.run_id))
    return record["status"] if record else None


def execute_run(spec: RunSpec, out: str | Path, force: bool = False, progress: bool = True,
                extra: dict | None = None, should_stop=None) -> dict | None:
    """Run `spec` unless it is finished (or locked by another process); return its record (None if skipped
    because another process holds it). `extra` is merged into the record (e.g. the SLURM job id);
    `should_stop` is passed to train_run (preemption)."""
    directory = store.run_dir(out, spec.suite, spec.run_id)
    with store.RunLock(directory) as lock:
        if not lock.acquired:
            return None
        previous = store.read_record(directory) or {}
        status = previous.get("status")
        if status == store.FINISHED and not force:
            return previous
        if force or status in store.FAILED:
            (directory / store.CHECKPOINT).unlink(missing_ok=True)
        record = {
            "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": spec.profile,
            "config": spec.config.resolved, "status": "running", "started": _now(), "step": None,
            "resumed": (directory / store.CHECKPOINT).exists(),
            "attempts": previous.get("attempts", 0) + 1, "requeues": previous.get("requeues", 0),
            "provenance": provenance(), **(extra or {}),
        }
        store.write_json(directory / store.RECORD, record)
        label = " ".join(f"{k}={v}" for k, v in spec.label.items())
        try:
            result = train_run(spec.config, directory, progress=progress, label=label, should_stop=should_stop)
        except Exception:  # noqa: BLE001 — any failure is recorded, the suite goes on
            record.update(status="error", traceback=traceback.format_exc(), finished=_now())
        else:
            record.update(status=result.status, step=result.step, metrics=result.metrics, notes=result.notes,
                          finished=_now())
            if result.diverged_at is not None:
                record["diverged_at"] = result.diverged_at
        store.write_json(directory / store.RECORD, record)
        return record
