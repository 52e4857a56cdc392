"""Where the SLURM executor keeps its files: submitit's folder and the suite's submission manifest."""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

from .. import store

MANIFEST = "manifest.json"


class SlurmError(RuntimeError):
    """Submitting to or reading from SLURM failed; the message says what to check."""


def submitit_root(out: str | Path, suite_name: str) -> Path:
    """Where submitit's files and the manifest live: <out>/<suite>/submitit/."""
    return store.suite_dir(Path(out).absolute(), suite_name) / "submitit"


def submitit_folder(out: str | Path, suite_name: str) -> Path:
    """The executor folder: one sub-folder per job (``%j``; array tasks ``<array>_<index>``)."""
    return submitit_root(out, suite_name) / "%j"


def manifest_path(out: str | Path, suite_name: str) -> Path:
    return submitit_root(out, suite_name) / MANIFEST


def read_manifest(out: str | Path, suite_name: str) -> dict:
    """The submission manifest: ``{"suite", "folder", "arrays": [...], "runs": {run_id: entry}}`` where an
    entry holds ``job_id``, ``submitted`` (ISO time), ``submitted_ts``, ``label``, ``profile``, ``config``
    and ``collected`` (the status recorded once the job ended, else null)."""
    data = store.read_json(manifest_path(out, suite_name)) or {}
    data.setdefault("suite", suite_name)
    data.setdefault("folder", str(submitit_folder(out, suite_name)))
    data.setdefault("arrays", [])
    data.setdefault("runs", {})
    return data


def write_manifest(out: str | Path, suite_name: str, manifest: dict) -> None:
    store.write_json(manifest_path(out, suite_name), manifest)


@contextmanager
def manifest_lock(out: str | Path, suite_name: str, timeout_s: float = 120.0):
    """An exclusive flock on the suite's manifest (bounded wait): two run-suite processes never submit the
    same runs."""
    path = submitit_root(out, suite_name) / ".manifest.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmError(f"{path}: another run-suite process holds this suite's manifest lock "
                                     f"for more than {timeout_s:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
