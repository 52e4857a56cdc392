"""Executors under failure (harness/executors.py, README "Reliability"): a pool worker killed by SIGKILL,
Ctrl-C with --jobs, the suite's progress line, the --jobs cap, and user plugins in every process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from harness import executors, plugins, store
from harness.cli import run_suite_main
from harness.executors import SuiteProgress
from harness.suite import load_suite
from helpers_harness import (ROOT, no_report, one_torch_thread, read_record, records_by_id,  # noqa: F401
                             subprocess_env, write_suite)

WAIT_S = 240  # upper bound on any wait for a subprocess (CI cores may be busy)
TESTS = os.path.dirname(os.path.abspath(__file__))
needs_two_cores = pytest.mark.skipif(executors.usable_cores() < 2, reason="--jobs 2 is capped to 1 on one core")


def _run_suite_process(args: list[str], log, **env) -> subprocess.Popen:
    """`python -m harness.cli ARGS` in its own session (a terminal's process group), output to `log`."""
    environment = subprocess_env()
    environment["PYTHONPATH"] = TESTS + os.pathsep + environment["PYTHONPATH"]
    environment.update(env)
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=environment,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_group_to_end(group: int) -> None:
    """Every process of the session (run-suite, its forkserver and pool workers) has exited."""
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "processes of run-suite's session outlived it"
        time.sleep(0.1)


# -- a pool worker killed by the out-of-memory killer ------------------------------------------------------

@needs_two_cores
def test_a_worker_killed_by_sigkill_does_not_end_the_suite(tmp_path):
    """One run's worker SIGKILLs itself (tests/sigkill_plugin.py) once the other worker's run has written its
    first checkpoint. The run is recorded as `error` with the signal; the run that was training on the
    other worker when the pool broke is resubmitted and resumes from its checkpoint; the run not started yet
    runs; the report is written."""
    path = write_suite(tmp_path, name="oom", base={"training": {"checkpoint_every": 10, "log_every": 10}},
                       zip=[{"estimator.name": ["ste", "sigkill_on_first_step", "rotation"],
                             "training.steps": [100, 4, 4]}])
    out = tmp_path / "results"
    log = tmp_path / "run-suite.log"
    proc = _run_suite_process([str(path), "--out", str(out), "--jobs", "2", "--no-progress"], log,
                              ROTATION_HARNESS_PLUGINS="sigkill_plugin",
                              SIGKILL_PLUGIN_WAIT_FOR=str(out / "oom" / "runs" / "*" / store.CHECKPOINT))
    proc.wait(timeout=WAIT_S)
    text = log.read_text()
    assert proc.returncode == 1, text[-3000:]  # one run did not finish
    assert "BrokenProcessPool" not in text and "Traceback" not in text, text[-3000:]
    assert "1 of 3 runs did not finish (error)" in text
    assert re.search(r"run-suite: run \w+ \(estimator.name=sigkill_on_first_step[^)]*\): its pool worker \(pid \d+\) "
                     r"was killed by SIGKILL", text), text[-3000:]

    records = {r["config"]["estimator"]["name"]: r for r in records_by_id(out, "oom").values()}
    assert len(records) == 3
    victim = records["sigkill_on_first_step"]
    assert victim["status"] == "error" and victim["killed_by_signal"] == "SIGKILL"
    assert "was killed by SIGKILL" in victim["traceback"] and "out-of-memory killer" in victim["traceback"]
    assert "Run the same run-suite command again to resume this run" in victim["traceback"]
    assert victim["pool_worker"]["pid"] > 0
    survivor = records["ste"]
    assert survivor["status"] == "finished" and survivor["step"] == 100
    assert survivor["attempts"] == 2 and survivor["resumed"] is True, "the run stopped with the pool was lost"
    assert records["rotation"]["status"] == "finished"
    results = (out / "oom" / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 3
    assert (out / "oom" / "report.md").exists()


def test_a_pool_that_cannot_start_any_run_raises_instead_of_retrying_forever(tmp_path, monkeypatch):
    """Workers that die before any run starts (here: a plugin that does not import in them) break every new
    pool the same way: run_pool raises instead of rebuilding pools without end."""
    (spec,) = load_suite(write_suite(tmp_path, name="nostart", grid={"estimator.name": ["ste"]})).runs
    monkeypatch.setenv(plugins.PLUGINS_VARIABLE, "no_such_plugin_module")
    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    with ThreadPoolExecutor(1) as caller:  # a regression would loop: fail on the timeout instead of hanging
        attempt = caller.submit(executors.run_pool, [spec], tmp_path / "out", 2, progress=False)
        with pytest.raises(BrokenProcessPool, match="broke before any run started"):
            attempt.result(timeout=WAIT_S)
    assert read_record(store.run_dir(tmp_path / "out", "nostart", spec.run_id)) is None  # never started


# -- Ctrl-C --------------------------------------------------------------------------------------------------

@needs_two_cores
def test_ctrl_c_with_jobs_ends_in_one_line_and_stops_every_worker(tmp_path):
    path = write_suite(tmp_path, name="ctrlc", grid={"estimator.name": ["ste", "rotation", "reflection"]},
                       base={"training": {"steps": 300, "checkpoint_every": 5, "log_every": 50}})
    out = tmp_path / "results"
    log = tmp_path / "run-suite.log"
    proc = _run_suite_process([str(path), "--out", str(out), "--jobs", "2", "--no-progress"], log)
    try:
        deadline = time.monotonic() + WAIT_S
        while not list((out / "ctrlc").glob(f"runs/*/{store.CHECKPOINT}")):  # a run is mid-way
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared in time:\n" + log.read_text()[-3000:]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    match = re.search(r"run-suite: interrupted: (\d+) runs? finished, (\d+) left; run the same command to resume",
                      text)
    assert match, text[-3000:]
    finished = [r for r in records_by_id(out, "ctrlc").values() if r["status"] == "finished"]
    assert int(match.group(1)) == len(finished) and int(match.group(1)) + int(match.group(2)) == 3
    _wait_for_group_to_end(proc.pid)  # no worker trains on
    # the runs stopped mid-way keep the record `running` and their checkpoint: the next run-suite resumes them
    stopped = [d for d in (out / "ctrlc" / "runs").iterdir() if read_record(d)["status"] == "running"]
    assert any((d / store.CHECKPOINT).exists() for d in stopped)


def test_ctrl_c_in_a_local_suite_ends_in_one_line(tmp_path, monkeypatch, capsys, no_report, one_torch_thread):
    from harness import runner

    path = write_suite(tmp_path, name="ctrlc_local", grid={"estimator.name": ["ste", "rotation", "reflection"]})
    real = runner.train_run
    calls = []

    def interrupted_at_the_second_run(config, directory, **kwargs):
        calls.append(config.estimator.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(config, directory, **kwargs)

    monkeypatch.setattr(runner, "train_run", interrupted_at_the_second_run)
    assert run_suite_main([str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "run-suite: interrupted: 1 run finished, 2 left; run the same command to resume" in err
    assert calls == ["ste", "rotation"]
    statuses = sorted(r["status"] for r in records_by_id(tmp_path / "out", "ctrlc_local").values())
    assert statuses == ["finished", "running"]  # the interrupted run resumes at the next run-suite


# -- --jobs cap ----------------------------------------------------------------------------------------------

def test_jobs_is_capped_at_the_cores_and_the_runs_to_do(tmp_path, monkeypatch, capsys, no_report,
                                                        one_torch_thread):
    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    path = write_suite(tmp_path, name="capped", grid={"estimator.name": ["ste", "rotation", "reflection"]})
    out = tmp_path / "out"
    assert run_suite_main([str(path), "--out", str(out), "--no-progress", "--jobs", "5"]) == 0
    assert "run-suite: --jobs 5 capped to 2 (2 cores, 3 runs to do)" in capsys.readouterr().err
    assert all(r["status"] == "finished" for r in records_by_id(out, "capped").values())
    # finished runs are not runs to do: nothing left, so no pool at all
    assert run_suite_main([str(path), "--out", str(out), "--no-progress", "--jobs", "2"]) == 0
    assert "run-suite: --jobs 2 capped to 1 (2 cores, 0 runs to do)" in capsys.readouterr().err


def test_jobs_within_the_limits_is_not_capped(monkeypatch, caplog):
    monkeypatch.setattr(executors, "usable_cores", lambda: 8)
    assert executors.cap_jobs(4, 10) == 4
    assert "capped" not in caplog.text
    assert executors.cap_jobs(4, 3) == 3 and executors.cap_jobs(16, 100) == 8 and executors.cap_jobs(3, 0) == 1


def test_jobs_are_capped_by_the_processes_of_data_parallel_runs(monkeypatch, caplog):
    """A run with training.world_size N starts N processes: --jobs J would start J * N."""
    monkeypatch.setattr(executors, "usable_cores", lambda: 8)
    assert executors.cap_jobs(4, 10, processes_per_run=2) == 4
    assert executors.cap_jobs(4, 10, processes_per_run=4) == 2
    assert executors.cap_jobs(4, 10, processes_per_run=16) == 1
    assert "--jobs 4 capped to 2 (8 cores, 4 processes per run, 10 runs to do)" in caplog.text


# -- the suite's progress line -------------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(status: str) -> dict:
    return {"status": status, "started": "2999-01-01T00:00:00+00:00"}  # started after the progress began


def test_suite_progress_counts_and_estimates_the_time_left():
    clock = _Clock()
    progress = SuiteProgress(5, workers=2, bar=False, clock=clock)
    progress.queue(["a", "b", "c", "d", "e"])  # a and b run, c d e wait
    assert progress.line() == "0/5 runs done: 0 finished, 2 running, 0 failed, 3 pending; time left unknown yet"
    clock.now += 60
    progress.ended("a", _record("finished"))  # took 60 s; c starts now
    # mean 60 s; left: d and e pending (2 x 60 s), b ran 60 s (0 left), c just started (60 s left); / 2 workers
    assert progress.eta_s() == pytest.approx(90.0)
    assert progress.line() == "1/5 runs done: 1 finished, 2 running, 0 failed, 2 pending; about 1m30s left"
    clock.now += 30
    progress.ended("b", _record("diverged"))  # took 90 s: mean 75 s; d starts
    # c ran 30 s (45 left), d 0 s (75 left), e pending (75): 195 / 2
    assert progress.eta_s() == pytest.approx(97.5)
    progress.ended("c", None)  # another run-suite holds it
    progress.drop("d")  # its pool broke: taken back, to be queued again
    assert progress.line().startswith("3/5 runs done: 1 finished, 1 running, 1 failed, 1 pending, "
                                      "1 held by another run-suite;")
    progress.queue(["d"])
    clock.now += 10
    progress.ended("e", _record("error"))  # an exception, not a trained run: its time is not counted
    progress.ended("d", {"status": "finished", "started": "2000-01-01T00:00:00+00:00"})  # skipped: finished before
    assert progress.durations == [60.0, 90.0]
    assert progress.line() == "5/5 runs done: 2 finished, 0 running, 2 failed, 0 pending, 1 held by another run-suite"


def test_no_progress_logs_the_suite_line_at_each_run(tmp_path, capsys, no_report, one_torch_thread):
    path = write_suite(tmp_path, name="lines", grid={"estimator.name": ["ste", "rotation"]})
    assert run_suite_main([str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"run-suite: 1/2 runs done: 1 finished, 1 running, 0 failed, 0 pending; about \S+ left", err)
    assert "run-suite: 2/2 runs done: 2 finished, 0 running, 0 failed, 0 pending\n" in err
    # -q keeps warnings and errors only
    assert run_suite_main([str(path), "--out", str(tmp_path / "out"), "--no-progress", "-q"]) == 0
    assert "run-suite:" not in capsys.readouterr().err


# -- plugins -------------------------------------------------------------------------------------------------

def test_plugins_are_imported_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_a.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.PLUGINS_VARIABLE, " my_plugin_a , ")
    assert plugins.import_plugins() == ["my_plugin_a"]
    assert sys.modules["my_plugin_a"].LOADED
    monkeypatch.setenv(plugins.PLUGINS_VARIABLE, "my_plugin_a,my_plugn_b")
    with pytest.raises(plugins.PluginError) as error:
        plugins.import_plugins()
    message = str(error.value)
    assert "ROTATION_HARNESS_PLUGINS='my_plugin_a,my_plugn_b'" in message and "'my_plugn_b'" in message
    assert "PYTHONPATH" in message


def test_run_suite_reports_a_plugin_that_does_not_import(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(plugins.PLUGINS_VARIABLE, "no_such_plugin_module")
    path = write_suite(tmp_path, name="plugged")
    assert run_suite_main([str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    assert "cannot import plugin module 'no_such_plugin_module'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

