"""Shared helpers for the harness tests (test_suite.py, test_runs.py, test_cli.py).

Everything here builds TINY suites (a VQ-VAE with 8 channels, 16 codes of dimension 4, 16×16 natural-image
patches, batch 8, a handful of steps) so a run takes about a second on one CPU core.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

#: The `base` of every tiny suite: the `cpu` preset made small through overrides.
TINY_BASE = {
    "model": {"family": "vqvae", "preset": "cpu", "resolution": 16, "channels": 8, "channel_mult": [1, 2],
              "num_codes": 16, "latent_dim": 4},
    "estimator": {"name": "rotation"},
    "data": {"name": "natural_patches", "size": 16, "train_patches": 256, "val_patches": 64},
    "training": {"steps": 4, "batch_size": 8, "eval_batches": 2, "log_every": 1, "warmup_steps": 0,
                 "checkpoint_every": 100, "progress_bar": False, "device": "cpu"},
    "metrics": {"diagnostics": True, "diagnostics_batch": 4},
}


def tiny_raw(name: str = "tiny", seeds=(0,), grid: dict | None = None, **extra) -> dict:
    """A tiny suite as a dict; `base` may be given in `extra` as a dict merged over TINY_BASE per section."""
    base = copy.deepcopy(TINY_BASE)
    for section, values in (extra.pop("base", None) or {}).items():
        base.setdefault(section, {}).update(values)
    raw = {"name": name, "seeds": list(seeds), "base": base}
    if grid is not None:
        raw["grid"] = grid
    raw.update(extra)
    return raw


def write_yaml(path: Path, raw: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_suite(directory: Path, name: str = "tiny", **kwargs) -> Path:
    """Write a tiny suite file `<directory>/<name>.yaml` and return its path."""
    return write_yaml(Path(directory) / f"{name}.yaml", tiny_raw(name, **kwargs))


def run_dirs(out: Path, suite: str) -> list[Path]:
    return sorted(p for p in (Path(out) / suite / "runs").glob("*") if p.is_dir())


def read_record(run_dir: Path) -> dict | None:
    """The run's record.json, parsed strictly (a corrupt file fails the test)."""
    path = Path(run_dir) / "record.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def records_by_id(out: Path, suite: str) -> dict[str, dict]:
    return {d.name: read_record(d) for d in run_dirs(out, suite) if (d / "record.json").exists()}


def read_history(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_metrics(got: dict, expected: dict, rel: float = 1e-6, skip=("wall_time_s",)) -> None:
    """Same metric names, and every value equal to `rel` relative tolerance, except `skip`."""
    got_keys = set(got) - set(skip)
    expected_keys = set(expected) - set(skip)
    assert got_keys == expected_keys
    for key in sorted(expected_keys):
        a, b = got[key], expected[key]
        if isinstance(b, float) and math.isnan(b):
            assert isinstance(a, float) and math.isnan(a), key
            continue
        assert a == pytest.approx(b, rel=rel, abs=1e-9), f"metric {key}: {a!r} != {b!r}"


@pytest.fixture(autouse=False)
def one_torch_thread():
    """Train with one torch thread, as the subprocesses (OMP_NUM_THREADS=1) and the pool workers do.

    Results depend on the thread count at the 1e-5 level (reduction order), so runs compared for equality
    must use the same count; one thread is also the fastest for these tiny models and immune to busy cores.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_report(monkeypatch):
    """run-suite without its end-of-suite report (plots take seconds); for tests about runs, not reports."""
    from harness import report

    monkeypatch.setattr(report, "write_suite_report",
                        lambda *args, **kwargs: {"summary": "(report skipped by the test)", "files": []})


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_run_suite(args: list[str], log_dir: Path, tag: str) -> tuple[subprocess.Popen, Path]:
    """`python -m harness.cli ARGS` in the background, stdout+stderr to a log file (no pipe to fill up)."""
    log = Path(log_dir) / f"{tag}.log"
    handle = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=subprocess_env(),
                            stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return proc, log
