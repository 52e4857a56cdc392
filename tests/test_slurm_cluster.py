"""Integration tests of the SLURM executor on a real cluster (CI: `bash scripts/local_slurm.sh up` first).

Tiny VQ-VAE runs (a few seconds each) go through `run_slurm`/`collect_slurm`:
1. records equal the local executor's for the same seeds (with the same torch thread count, 1);
2. a job cancelled with scancel is recorded `cancelled`, one whose python is SIGKILLed `error`, the others finish;
3. a run interrupted by USR2 (as before a time-out) checkpoints and is requeued; once its requeues are spent
   (slurm.max_requeues) a later run-suite leaves it, and with a larger budget resubmits it: the new job resumes
   from the checkpoint to the same metrics;
4. a run that raises is recorded `error` with its traceback.
Every wait is bounded, so a hang fails the test instead of blocking CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from harness import store
from harness.status import RunStatus
from harness import slurm as hs
from harness.slurm import collect
from harness.runner import execute_run
from harness.suite import deep_merge, load_suite
from helpers_harness import TINY_BASE

pytestmark = pytest.mark.slurm

WAIT_S = 150  # bound on any single wait for the cluster


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client commands (sinfo/sbatch) are not on PATH; start the local cluster with " \
               "`bash scripts/local_slurm.sh up`"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        if info.returncode != 0 or not info.stdout.strip():
            return f"the SLURM cluster is not up (sinfo: {(info.stderr or info.stdout).strip()[:200]}); " \
                   "run `bash scripts/local_slurm.sh up`"
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, text=True,
                              timeout=20)
        if acct.returncode != 0:
            return f"SLURM accounting does not answer (sacct: {acct.stderr.strip()[:200]})"
    except (OSError, subprocess.SubprocessError) as error:
        return f"SLURM commands failed: {error}"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(autouse=True)
def _cancel_leftover_jobs(tmp_path):
    """If a test fails half-way, scancel what it submitted (a pending requeue, a 20000-step run ...)."""
    yield
    for manifest in tmp_path.glob("**/submitit/manifest.json"):
        arrays = [entry["job_id"] for entry in (store.read_json(manifest) or {}).get("arrays", [])]
        if arrays:
            subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)


#: The tiny suite base of the harness tests, run longer and checkpointed (the requeue tests need checkpoints).
BASE = deep_merge(TINY_BASE, {"training": {"steps": 10, "log_every": 2, "checkpoint_every": 5}})
SLURM = {"cpus_per_task": 1, "time": "00:10:00", "array_parallelism": 2, "poll_interval_s": 1,
         "wait_timeout_min": WAIT_S / 60}


def make_suite(tmp_path: Path, name: str, seeds=(0,), grid=None, base=None, slurm=None):
    raw = {"name": name, "seeds": list(seeds), "base": base or BASE, "slurm": {**SLURM, **(slurm or {})}}
    if grid:
        raw["grid"] = grid
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_suite(path)


def record_of(out: Path, spec) -> dict | None:
    return store.read_record(store.run_dir(Path(out).absolute(), spec.suite, spec.run_id))


def job_id_of(out: Path, spec) -> str:
    return hs.read_manifest(Path(out).absolute(), spec.suite)["runs"][spec.run_id]["job_id"]


def wait_until(predicate, what: str, timeout_s: float = WAIT_S, interval_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{_queue()}")


def _queue() -> str:
    try:
        return subprocess.run(["squeue", "-r", "-o", "%i %T %r"], capture_output=True, text=True,
                              timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "(squeue failed)"


def squeue_state(job_id: str) -> str:
    result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=20)
    return result.stdout.strip()


def local_metrics(specs, out: Path, threads: int = 1) -> dict:
    """The local executor's metrics for `specs` with `threads` torch threads (the SLURM jobs' cpus_per_task)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = {}
        for spec in specs:
            record = execute_run(spec, out, progress=False)
            assert record["status"] == RunStatus.FINISHED, record.get("traceback")
            result[spec.run_id] = comparable(record["metrics"])
        return result
    finally:
        torch.set_num_threads(before)


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "wall_time_s"}


def job_python_pid(job_id: str) -> int | None:
    """The pid of the job's python process (this machine is the only node), from /proc."""
    array_id, _, task = job_id.partition("_")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("python"):
                continue
            env = dict(line.split("=", 1) for line in (entry / "environ").read_bytes().decode(errors="replace")
                       .split("\0") if "=" in line)
        except OSError:
            continue
        if task:
            if env.get("SLURM_ARRAY_JOB_ID") == array_id and env.get("SLURM_ARRAY_TASK_ID") == task:
                return int(entry.name)
        elif env.get("SLURM_JOB_ID") == array_id:
            return int(entry.name)
    return None


def test_suite_on_slurm_matches_the_local_executor(tmp_path):
    suite = make_suite(tmp_path, "slurm_it_equal", seeds=(0, 1))
    out = tmp_path / "slurm"
    assert hs.run_slurm(suite, out, wait=False, progress=False) is False
    expected = local_metrics(suite.runs, tmp_path / "local")  # while the jobs start
    counts = hs.collect_slurm(suite.name, out, wait=True, timeout_s=WAIT_S, poll_s=1)
    assert counts == {"finished": 2, "running": 0, "pending": 0, "failed": 0}, _queue()
    for spec in suite.runs:
        record = record_of(out, spec)
        assert record["status"] == RunStatus.FINISHED, record.get("traceback")
        assert record["slurm_job_id"] == job_id_of(out, spec)
        assert record["torch_threads"] == 1 and record["requeues"] == 0
        assert comparable(record["metrics"]) == expected[spec.run_id]
    # everything is finished: another run-suite submits nothing and reports completion
    assert hs.run_slurm(suite, out, wait=True, progress=False) is True
    assert len(hs.read_manifest(out.absolute(), suite.name)["arrays"]) == 1


def test_cancelled_and_killed_jobs_are_recorded_while_the_others_finish(tmp_path):
    suite = make_suite(tmp_path, "slurm_it_cancel", grid={"training.steps": [10, 20000, 20001]})
    short, to_cancel, to_kill = suite.runs
    out = tmp_path / "slurm"
    assert hs.run_slurm(suite, out, wait=False, progress=False) is False
    # each once its run has started inside its job (cancelling first frees a CPU of the 2-CPU test node)
    wait_until(lambda: (record_of(out, to_cancel) or {}).get("status") == "running", "the run to cancel to start")
    subprocess.run(["scancel", job_id_of(out, to_cancel)], check=True, timeout=30)
    wait_until(lambda: (record_of(out, to_kill) or {}).get("status") == "running", "the run to kill to start")
    pid = wait_until(lambda: job_python_pid(job_id_of(out, to_kill)), "the python process of the job to kill",
                     timeout_s=30)
    os.kill(pid, 9)  # killed outside Python: no traceback, no result pickle
    counts = hs.collect_slurm(suite.name, out, wait=True, timeout_s=WAIT_S, poll_s=1)
    assert counts == {"finished": 1, "running": 0, "pending": 0, "failed": 2}, _queue()
    assert record_of(out, short)["status"] == RunStatus.FINISHED
    cancelled = record_of(out, to_cancel)
    assert cancelled["status"] == "cancelled" and cancelled["slurm_state"].startswith("CANCELLED")
    killed = record_of(out, to_kill)
    assert killed["status"] == "error" and killed["slurm_state"] == "FAILED"
    assert "no Python traceback" in killed["traceback"] and "log.err" in killed["traceback"]
    manifest = hs.read_manifest(out.absolute(), suite.name)
    assert {e["collected"] for e in manifest["runs"].values()} == {"finished", "cancelled", "error"}


def test_an_interrupted_run_is_requeued_bounded_by_max_requeues_and_resumes_to_the_same_metrics(tmp_path):
    base = {**BASE, "training": {**BASE["training"], "steps": 60, "checkpoint_every": 5}}
    suite = make_suite(tmp_path, "slurm_it_requeue", base=base, slurm={"max_requeues": 1})
    spec = suite.runs[0]
    out = tmp_path / "slurm"
    directory = store.run_dir(out.absolute(), spec.suite, spec.run_id)
    assert hs.run_slurm(suite, out, wait=False, progress=False) is False
    job_id = job_id_of(out, spec)
    assert "_" not in job_id  # a suite of one run is a plain job
    wait_until(lambda: (directory / store.CHECKPOINT).exists(), "the first periodic checkpoint")
    # USR2 only, as SLURM sends before a time-out (a SIGTERM could kill the handler's scontrol)
    subprocess.run(["scancel", job_id, "--signal", "USR2"], check=True, timeout=30)
    wait_until(lambda: squeue_state(job_id) == "PENDING", "the requeued job to be pending", timeout_s=60)
    record = record_of(out, spec)
    assert record["status"] == "preempted" and 5 <= record["step"] < 60 and record["requeues"] == 1
    log = collect.slurm_job(out.absolute(), suite.name, job_id).paths.stdout
    assert "checkpointed at step" in log.read_text() and "requeue #1" in log.read_text()
    # Slurm holds a requeued job ~120 s (BeginTime). Cancel it instead: the run's own record stands and,
    # its one requeue spent, another run-suite does not resubmit it ...
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    wait_until(lambda: not squeue_state(job_id), "the cancelled job to leave the queue", timeout_s=60)
    assert hs.collect_slurm(suite.name, out, wait=True, timeout_s=WAIT_S, poll_s=1)["failed"] == 1
    assert hs.run_slurm(suite, out, wait=False, progress=False) is True
    assert len(hs.read_manifest(out.absolute(), suite.name)["arrays"]) == 1
    assert record_of(out, spec)["status"] == "preempted"
    # ... until slurm.max_requeues allows another: a new job resumes the run from its checkpoint
    more = load_suite(suite.path, overrides=["slurm.max_requeues=2"])
    assert hs.run_slurm(more, out, wait=False, progress=False) is False
    expected = local_metrics([spec], tmp_path / "local")
    counts = hs.collect_slurm(suite.name, out, wait=True, timeout_s=WAIT_S, poll_s=1)
    assert counts["finished"] == 1, _queue()
    record = record_of(out, spec)
    assert record["status"] == RunStatus.FINISHED and record["requeues"] == 2 and record["resumed"] is True
    assert record["slurm_job_id"] == job_id_of(out, spec) != job_id and record["attempts"] == 2
    assert comparable(record["metrics"]) == expected[spec.run_id]


def test_a_run_that_raises_is_recorded_as_error_with_its_traceback(tmp_path):
    images = tmp_path / "one_image" / "class_a"  # loads (the root holds an image), fails in the job: one is too few
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "0.png")
    base = {**BASE, "data": {"name": "image_folder", "root": str(images.parent), "size": 16}}
    suite = make_suite(tmp_path, "slurm_it_error", base=base)
    out = tmp_path / "slurm"
    assert hs.run_slurm(suite, out, wait=True, progress=False) is True
    record = record_of(out, suite.runs[0])
    assert record["status"] == "error" and record["slurm_job_id"] == job_id_of(out, suite.runs[0])
    assert "ValueError" in record["traceback"] and "at least 2" in record["traceback"]
