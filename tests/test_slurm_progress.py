"""The SLURM suite line: runs finished, running, pending and failed from the job states, and the time left
estimated from the runs that ended (no cluster needed: the jobs are stand-ins)."""
from __future__ import annotations

import logging

import pytest

from harness import store
from harness.slurm import collect

SUITE = "eta_suite"


def _record(out, run_id: str, status: str, seconds: int | None) -> None:
    record = {"run_id": run_id, "suite": SUITE, "status": status, "started": "2026-01-01T10:00:00+00:00"}
    if seconds is not None:
        record["finished"] = f"2026-01-01T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00"
    store.write_json(store.run_dir(out, SUITE, run_id) / store.RECORD, record)


@pytest.fixture
def jobs(tmp_path):
    _record(tmp_path, "r1", "finished", 60)
    _record(tmp_path, "r2", "diverged", 120)  # a result: its wall time counts
    _record(tmp_path, "r6", "error", 3000)  # not a result: left out of the estimate
    job_set = collect.JobSet(tmp_path, SUITE)
    job_set.jobs = {"r3": object(), "r4": object(), "r5": object()}  # r3 running, r4 and r5 pending
    job_set.states = {"r3": "RUNNING", "r4": "PENDING", "r5": "PENDING"}
    job_set.running_since = {"r3": 100.0}
    return job_set


def test_time_left_from_the_ended_runs_and_the_running_jobs(jobs):
    run_ids = ["r1", "r2", "r3", "r4", "r5", "r6"]
    # mean of the results 90 s; two pending runs and what the mean leaves of r3 (running for 30 s)
    assert jobs.eta_s(run_ids, now=130.0) == pytest.approx(90 * 2 + 60)
    jobs.running_since["r4"] = 125.0  # two running jobs: twice the parallelism
    assert jobs.eta_s(run_ids, now=130.0) == pytest.approx((90 * 1 + 60 + 85) / 2)
    assert jobs.eta_s(["r3", "r4", "r5"], now=130.0) is None  # nothing ended yet
    assert jobs.counts(run_ids) == {"finished": 1, "running": 1, "pending": 2, "failed": 2}


def test_the_waiting_line_says_the_time_left(jobs, monkeypatch, caplog):
    monkeypatch.setattr(collect, "read_manifest", lambda out, name: {"runs": {}})
    monkeypatch.setattr(collect, "merge_collected", lambda *args: None)
    monkeypatch.setattr(jobs, "poll", lambda manifest: {})
    monkeypatch.setattr(jobs, "eta_s", lambda run_ids: 250.0)
    with caplog.at_level(logging.INFO, logger="harness.slurm.collect"):
        done = collect.wait_for(jobs, ["r1", "r2", "r3", "r4", "r5", "r6"], timeout_s=0.0, poll_s=0.01, progress=True)
    assert not done
    assert (f"{SUITE}: 1 finished, 1 running, 2 pending, 2 failed/other (of 6); about 4m10s left"
            in caplog.text)
