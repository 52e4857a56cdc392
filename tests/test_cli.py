"""run-suite as a program: kill -9 and resume, two processes on one results directory, --jobs 2; make-report
on missing or empty folders and Ctrl-C. (Pool failures, Ctrl-C with --jobs and the --jobs cap: test_executors.)

The subprocesses run `python -m harness.cli` with OMP_NUM_THREADS=1; runs compared with them in this
process use one torch thread too (results depend on the thread count at the 1e-5 level).
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch

from harness import executors, store
from harness.cli import make_report_main, run_suite_main
from harness.suite import load_suite
from helpers_harness import (assert_same_metrics, no_report, one_torch_thread, read_history,  # noqa: F401
                             read_record, records_by_id, start_run_suite, write_suite)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WAIT_S = 240  # upper bound on any wait for a subprocess (CI cores may be busy)


def _run_in_process(path, out, *extra) -> int:
    return run_suite_main([str(path), "--out", str(out), "--no-progress", *extra])


def _interrupted_run(out, suite: str):
    """A run folder with a checkpoint whose record still says `running` (mid-run), or None."""
    runs = out / suite / "runs"
    if not runs.exists():
        return None
    for directory in sorted(runs.iterdir()):
        if not (directory / store.CHECKPOINT).exists():
            continue
        try:
            record = json.loads((directory / store.RECORD).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if record["status"] == "running":
            return directory
    return None


def test_kill_and_resume(tmp_path, no_report):
    steps = 40
    path = write_suite(tmp_path, name="resume", grid={"estimator.name": ["rotation", "ste"]},
                       base={"training": {"steps": steps, "checkpoint_every": 5, "log_every": 5}})
    specs = load_suite(path).runs
    out = tmp_path / "interrupted"
    proc, log = start_run_suite([str(path), "--out", str(out), "--no-progress"], tmp_path, "killed")
    deadline = time.monotonic() + WAIT_S
    victim = None
    try:
        while victim is None:
            if proc.poll() is not None:
                pytest.fail(f"run-suite ended (rc {proc.returncode}) before a mid-run checkpoint was seen:\n"
                            + log.read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint.pt appeared in time:\n" + log.read_text()[-3000:])
            victim = _interrupted_run(out, "resume")
            if victim is None:
                time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL

    record = read_record(victim)
    state = torch.load(victim / store.CHECKPOINT, map_location="cpu", weights_only=True)
    assert record["status"] == "running" and record["attempts"] == 1
    if state["step"] == steps:  # the kill landed in the instant between the final save and the record
        pytest.skip("SIGKILL arrived after the run's last step; nothing to resume")
    assert 0 < state["step"] < steps and state["step"] % 5 == 0
    killed_at = state["step"]

    assert _run_in_process(path, out) == 0
    records = records_by_id(out, "resume")
    assert sorted(records) == sorted(s.run_id for s in specs)
    for run_id, rec in records.items():
        assert rec["status"] == "finished" and rec["step"] == steps
        if run_id == victim.name:
            assert rec["resumed"] is True and rec["attempts"] == 2
        else:
            assert rec["resumed"] is False and rec["attempts"] == 1

    reference = tmp_path / "uninterrupted"
    assert _run_in_process(path, reference) == 0
    expected = records_by_id(reference, "resume")
    assert sorted(expected) == sorted(records)
    for run_id in records:
        assert_same_metrics(records[run_id]["metrics"], expected[run_id]["metrics"])
    # the history (train rows logged before and after the kill) is the same too
    got_history = read_history(victim)
    want_history = read_history(reference / "resume" / "runs" / victim.name)
    assert [r["kind"] for r in got_history] == [r["kind"] for r in want_history]
    train_steps = [int(r["step"]) for r in got_history if r["kind"] == "train"]
    assert train_steps == list(range(0, steps, 5)) + [steps - 1]
    assert any(step < killed_at for step in train_steps) and any(step > killed_at for step in train_steps)
    for got, want in zip(got_history, want_history):
        for key, value in want.items():
            if value and key not in ("kind", "step"):
                assert float(got[key]) == pytest.approx(float(value), rel=1e-6), (got["step"], key)


def test_two_processes_share_one_results_directory(tmp_path):
    """Both processes exit 0 and every run finishes exactly once. The first run is long, so the process that
    does not hold it reaches the end of the suite while the other is still training it: it must wait for
    that run (or at least not report it as failed), not exit 1."""
    names = ["rotation", "ste", "reflection", "rotation_unscaled"]
    path = write_suite(tmp_path, name="shared", base={"training": {"log_every": 10}},
                       zip=[{"estimator.name": names, "training.steps": [300, 6, 6, 6]}])
    specs = load_suite(path).runs
    out = tmp_path / "results"
    procs = [start_run_suite([str(path), "--out", str(out), "--no-progress"], tmp_path, f"writer{i}")
             for i in range(2)]
    for proc, _ in procs:
        proc.wait(timeout=WAIT_S)
    records = records_by_id(out, "shared")  # parses every record.json strictly
    assert sorted(records) == sorted(s.run_id for s in specs)
    for record in records.values():
        assert record["status"] == "finished"
        assert record["attempts"] == 1 and record["resumed"] is False
    assert not list((out / "shared").glob("runs/*/.*.tmp"))  # no temporary file left behind
    logs = [log.read_text() for _, log in procs]
    assert all("did not finish" not in text for text in logs), logs
    for (proc, _), text in zip(procs, logs):
        assert proc.returncode == 0, text[-3000:]
    results = (out / "shared" / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 4 and all(",finished," in line for line in results[1:])


def test_pool_matches_local(tmp_path, monkeypatch, no_report):
    path = write_suite(tmp_path, name="pool", grid={"estimator.name": ["ste", "rotation", "reflection"]},
                       base={"training": {"steps": 6}})
    specs = load_suite(path).runs
    # two workers with one torch thread each, whatever the machine's core count (this process uses one too)
    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    assert _run_in_process(path, tmp_path / "one", "--jobs", "1") == 0
    assert _run_in_process(path, tmp_path / "two", "--jobs", "2") == 0
    one, two = records_by_id(tmp_path / "one", "pool"), records_by_id(tmp_path / "two", "pool")
    assert sorted(one) == sorted(two) == sorted(s.run_id for s in specs)
    for run_id in one:
        assert two[run_id]["status"] == one[run_id]["status"] == "finished"
        assert two[run_id]["config"] == one[run_id]["config"]
        assert_same_metrics(two[run_id]["metrics"], one[run_id]["metrics"])


def test_cli_imports_neither_torch_nor_the_harness_before_the_pool_starts():
    """`run-suite --jobs N` starts its workers before importing torch (harness/executors.py start_pool)."""
    import subprocess
    import sys

    code = "import sys, harness.cli, harness.executors; print(sorted(m for m in ('torch', 'harness.runner', " \
           "'harness.suite', 'estimators', 'models') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_start_pool_starts_every_worker_ready_to_train(monkeypatch):
    monkeypatch.setattr(executors, "usable_cores", lambda: 4)
    executors.start_pool(1).shutdown(wait=True)  # the forkserver (one per process) now runs, with this environment
    monkeypatch.setenv("ROTATION_HARNESS_TEST_MARK", "set after the forkserver started")
    pool = executors.start_pool(2)  # returns at once; the workers start in the background
    try:
        deadline = time.monotonic() + WAIT_S
        import multiprocessing

        while len(multiprocessing.active_children()) < 2:
            assert time.monotonic() < deadline, "the pool's workers did not start"
            time.sleep(0.05)
        # cores / jobs threads each, and torch._dynamo already imported (torch.optim needs it)
        assert [pool.submit(torch.get_num_threads).result(timeout=WAIT_S) for _ in range(4)] == [2] * 4
        assert pool.submit(eval, "'torch._dynamo' in __import__('sys').modules").result(timeout=WAIT_S)
        # the environment of the pool's creator now, not the forkserver's from its start
        mark = pool.submit(eval, "__import__('os').environ.get('ROTATION_HARNESS_TEST_MARK')").result(timeout=WAIT_S)
        assert mark == "set after the forkserver started"
    finally:
        pool.shutdown(wait=True)


def test_a_suite_that_does_not_load_leaves_no_pool_worker_behind(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: {estimator: {name: rotaton}}\n")
    import multiprocessing

    assert _run_in_process(bad, tmp_path / "out", "--jobs", "2") == 2
    assert "rotaton" in capsys.readouterr().err
    deadline = time.monotonic() + WAIT_S
    while multiprocessing.active_children():  # the workers it started exit (the pool was shut down)
        assert time.monotonic() < deadline, f"pool workers still alive: {multiprocessing.active_children()}"
        time.sleep(0.05)


# -- make-report ---------------------------------------------------------------------------------------------

def test_make_report_on_a_missing_or_empty_folder_says_what_to_run(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert make_report_main(["--out", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"make-report: {missing} is not a folder" in err
    assert f"run `run-suite SUITE --out {missing}` first" in err

    empty = tmp_path / "empty"
    (empty / "quick" / "runs").mkdir(parents=True)
    assert make_report_main(["--out", str(empty)]) == 1
    assert f"make-report: {empty} holds no run records" in capsys.readouterr().err
    # a suite named on the command line whose folder holds no record yet
    assert make_report_main(["quick", "--out", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"no run records in {empty / 'quick' / 'runs'}; run `run-suite quick --out {empty}` first" in err
    assert not list(empty.rglob("*.csv")) and not list(empty.rglob("*.md"))


def test_ctrl_c_in_make_report_ends_in_one_line(tmp_path, monkeypatch, capsys):
    from harness import report

    store.write_json(store.run_dir(tmp_path, "some_suite", "abc") / store.RECORD, {"run_id": "abc"})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_suite_report", interrupted)
    assert make_report_main(["--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "make-report: interrupted; run the same command to write the reports again"]
