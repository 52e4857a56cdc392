"""Where runs land: results/<suite>/runs/<run-id>/{record.json, history.csv, checkpoint.pt}.

Every write is atomic (write to a temporary file in the same folder, then rename) and gets the user's umask,
and each run folder has a lock file taken with flock while the run executes, so two run-suite processes on
one results directory never run the same run twice or corrupt each other's files.

A record that cannot be read (truncated, garbage, not a record) is a damaged run, never a crash: readers
log a warning naming the file and skip it, and the runner keeps a copy as ``record.json.damaged`` and
reruns the run (RunStatus.DAMAGED).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import pandas as pd

from .status import RunStatus

logger = logging.getLogger(__name__)

RECORD = "record.json"
DAMAGED_RECORD = "record.json.damaged"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
ARTIFACTS = "artifacts.json"
# The statuses the SLURM executor, the CLI and the figures compare with (harness/status.py says what each
# means for a rerun).
FINISHED = RunStatus.FINISHED
FAILED = (RunStatus.DIVERGED, RunStatus.ERROR)


class DamagedRecord(ValueError):
    """A record.json that cannot be read as a run record; the message names the file and what to do."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: damaged run record ({problem}); it is skipped, and rerunning the suite "
                         f"reruns this run (resumed from its checkpoint if it has one; the file is kept as "
                         f"{DAMAGED_RECORD})")
        self.path = Path(path)
        self.problem = problem


def suite_dir(out: str | Path, suite: str) -> Path:
    return Path(out) / suite


def run_dir(out: str | Path, suite: str, run_id: str) -> Path:
    return suite_dir(out, suite) / "runs" / run_id


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to a new temporary file beside `path`, then rename it over `path`.

    The temporary file is created with mode 0666 less the umask, as `open` would (tempfile.mkstemp would
    make it 0600, and the rename would keep that).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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


def load_record(directory: Path) -> dict | None:
    """The run's record, None if it has none; raises DamagedRecord if record.json is not a readable record
    (not JSON, not an object, or without a run_id, a suite and a known status)."""
    path = Path(directory) / RECORD
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedRecord(path, f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise DamagedRecord(path, f"a JSON {type(record).__name__}, not an object")
    for key in ("run_id", "suite"):
        if not isinstance(record.get(key), str):
            raise DamagedRecord(path, f"no {key}")
    if record.get("status") not in {status.value for status in RunStatus}:
        raise DamagedRecord(path, f"unknown status {record.get('status')!r}")
    return record


def read_record(directory: Path) -> dict | None:
    """The run's record; None if it has none, or (with a warning naming the file) if it is damaged."""
    try:
        return load_record(directory)
    except DamagedRecord as damage:
        logger.warning("%s", damage)
        return None


def keep_damaged_record(directory: Path) -> Path:
    """Copy the run's damaged record.json to record.json.damaged (before a rerun overwrites it)."""
    directory = Path(directory)
    target = directory / DAMAGED_RECORD
    shutil.copyfile(directory / RECORD, target)
    return target


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
    """Every run record under a suite folder (or a folder of suites); damaged ones are skipped with a
    warning naming the file."""
    for path in sorted(Path(directory).glob("**/runs/*/" + RECORD)):
        record = read_record(path.parent)
        if record is not None:
            yield record


def load_results(directory: str | Path) -> pd.DataFrame:
    """One row per run under `directory` (damaged records skipped with a warning): `results_frame`'s columns."""
    return results_frame(iter_records(directory))


def results_frame(records) -> pd.DataFrame:
    """One row per record: run_id, suite, status, step, requeues, label columns, config.* and metrics.

    Config columns are dotted (`config.estimator.name`); metrics are plain columns (`val_rec_loss`).
    """
    rows = []
    for record in records:
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
