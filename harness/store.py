"""Where runs land: results/<suite>/runs/<run-id>/{record.json, history.csv, checkpoint.pt}.

Every write is atomic (write to a temporary file in the same folder, then rename), and each run folder has a
lock file taken with flock while the run executes, so two run-suite processes on one results directory never
run the same run twice or corrupt each other's files.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

RECORD = "record.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
ARTIFACTS = "artifacts.json"
FINISHED = "finished"
#: Statuses that end a run for good: a re-run skips only `finished`; the rest are retried (failed) or
#: resumed from their checkpoint (interrupted).
FAILED = ("diverged", "error")
INTERRUPTED = ("running", "cancelled", "timeout", "preempted")


def suite_dir(out: str | Path, suite: str) -> Path:
    return Path(out) / suite


def run_dir(out: str | Path, suite: str, run_id: str) -> Path:
    return suite_dir(out, suite) / "runs" / run_id


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def read_record(directory: Path) -> dict | None:
    return read_json(Path(directory) / RECORD)


def write_history(path: Path, rows: list[dict]) -> None:
    """The metrics history as CSV: one row per logged step/evaluation, the union of all columns."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class RunLock:
    """An exclusive flock on a run folder; `acquired` says whether this process holds it.

    Non-blocking by default (a run another process holds is skipped); `wait=True` blocks until it is free.
    """

    def __init__(self, directory: Path, wait: bool = False):
        self.path = Path(directory) / ".lock"
        self.wait = wait
        self.acquired = False
        self._handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            self.acquired = True
        except BlockingIOError:
            self.acquired = False
        return self

    def __exit__(self, *exc):
        if self.acquired:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        return False


def iter_records(directory: str | Path):
    """Every run record under a suite folder (or a folder of suites)."""
    for path in sorted(Path(directory).glob("**/runs/*/" + RECORD)):
        record = read_json(path)
        if record is not None:
            yield record


def load_results(directory: str | Path) -> pd.DataFrame:
    """One row per run under `directory`: run_id, suite, status, label columns, config.* and metrics.

    Config columns are dotted (`config.estimator.name`); metrics are plain columns (`val_rec_loss`).
    """
    rows = []
    for record in iter_records(directory):
        row = {"run_id": record["run_id"], "suite": record["suite"], "status": record["status"],
               "step": record.get("step"), "requeues": record.get("requeues", 0)}
        row.update(_flatten(record.get("config", {}), "config."))
        row.update({f"label.{k}": v for k, v in (record.get("label") or {}).items()})
        row.update(record.get("metrics") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(mapping: dict, prefix: str) -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if not isinstance(value, list) else json.dumps(value)
    return out
