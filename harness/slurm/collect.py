"""Collecting a suite's SLURM jobs: their states (submitit's), and the records of runs whose job ended.

A job's state is submitit's (``job.state``, one forced sacct call per poll for every job); it has ended when
``job.done()`` says so, corrected where submitit's rule is not enough (see `final_state`). The runner
writes every record: a run whose job ended without settling its own record is marked through
`runner.mark_run` with the status of its SLURM state (see `states`).
"""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import submitit

from .. import store
from ..config import RunConfig
from ..executors import _duration
from ..runner import mark_run
from ..status import RunStatus
from ..suite import RunSpec
from . import states
from .files import manifest_lock, manifest_path, read_manifest, submitit_folder, write_manifest
from .settings import DEFAULT_POLL_INTERVAL_S, DEFAULT_WAIT_TIMEOUT_MIN

log = logging.getLogger(__name__)

#: Live states that submitit's ``done()`` would call done (it knows only PENDING, RUNNING, REQUEUED, ...).
HELD_STATES = ("CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "STOPPED", "REQUEUE_FED",
               "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT")
VANISH_AFTER_S = 60.0


def slurm_job(out: Path, suite_name: str, job_id: str) -> submitit.SlurmJob:
    return submitit.SlurmJob(folder=submitit_folder(out, suite_name), job_id=job_id)


def queued_job_ids() -> set[str] | None:
    """This user's job ids in the queue (array tasks as <A>_<i>); None if squeue fails."""
    try:
        output = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-u", str(os.getuid())], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if output.returncode != 0:
        return None
    return {line.strip() for line in output.stdout.splitlines() if line.strip()}


def final_state(job: submitit.SlurmJob, entry: dict, queued) -> str | None:
    """The state the job ended in, or None while SLURM still holds it. `job.state` is submitit's (as
    refreshed by the last forced call); `queued()` gives the ids in the queue (or None), asked only when
    sacct's word is not enough:

    * UNKNOWN to sacct: with a result pickle, COMPLETED or FAILED by the pickle; without one, out of the
      queue a minute after submission, VANISHED (accounting down or purged);
    * PREEMPTED: submitit waits for SLURM to requeue the job; out of the queue it ended (PreemptMode=CANCEL);
    * the live states submitit's ``done()`` does not know (`HELD_STATES`): still held."""
    state = job.state
    word = states.head(state)
    has_result = job.paths.result_pickle.exists()
    if word == "UNKNOWN":
        if has_result:
            return "COMPLETED" if job.exception() is None else "FAILED"
        if time.time() - float(entry.get("submitted_ts") or 0) > VANISH_AFTER_S:
            queue = queued()
            if queue is not None and job.job_id not in queue:
                return "VANISHED"
        return None
    if has_result:
        return state
    if word == "PREEMPTED":
        queue = queued()
        return state if queue is not None and job.job_id not in queue else None
    if word in HELD_STATES:
        return None
    return state if job.done() else None


def _log_tail(job: submitit.SlurmJob, lines: int = 40) -> str:
    parts = []
    for path in (job.paths.stderr, job.paths.stdout):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        if tail:
            parts.append(f"--- last lines of {path} ---\n{tail}")
    return "\n".join(parts) or f"(no log files under {job.paths.folder})"


def settle(entry: dict, run_id: str, suite_name: str, job: submitit.SlurmJob, state: str, out: Path) -> str | None:
    """Settle the record of a run whose job ended; return its status, or None if the run folder is locked
    (someone still runs it: try again later).

    A record the job's own run settled (finished, diverged, error, or stopped at a step boundary) stands,
    and so does a finished one or an earlier error/diverged result when the job never started the run
    (cancelled while pending). Otherwise the run is marked with its SLURM state's status: cancelled,
    timeout/preempted (resumable), or error with the job's traceback or the reason it has none, and the
    log tail."""
    directory = store.run_dir(out, suite_name, run_id)
    record = store.read_record(directory)
    if record is not None:
        status = record.get("status")
        mine = record.get("slurm_job_id") == job.job_id
        if status == RunStatus.FINISHED or (mine and status != RunStatus.RUNNING):
            return status
        if not mine and status in (RunStatus.DIVERGED, RunStatus.ERROR):
            return status
    word = states.head(state)
    status = RunStatus.ERROR if word == "COMPLETED" else states.status_for(state)
    fields = {"slurm_job_id": job.job_id, "slurm_state": state}
    if status == RunStatus.ERROR:
        raised = job.exception() if job.paths.result_pickle.exists() else None
        detail = f"the job raised:\n{raised}" if raised is not None else states.error_detail(state)
        fields["traceback"] = f"SLURM job {job.job_id}: {detail}\n{_log_tail(job)}"
    else:
        fields["log_tail"] = _log_tail(job)
    spec = RunSpec(suite=suite_name, run_id=run_id, label=entry.get("label"), profile=entry.get("profile"),
                   config=RunConfig.from_resolved(entry["config"], where=f"{manifest_path(out, suite_name)}: {run_id}"))
    with store.RunLock(directory) as lock:
        if not lock.acquired:
            return None
        current = store.read_record(directory)
        if current is not None and current.get("status") == RunStatus.FINISHED:
            return RunStatus.FINISHED.value
        mark_run(spec, out, status, **fields)
    return status.value


class JobSet:
    """The manifest's jobs not collected yet, for one suite: poll their states, settle the ones that ended."""

    def __init__(self, out: Path, suite_name: str):
        self.out, self.suite_name = out, suite_name
        self.jobs: dict[str, submitit.SlurmJob] = {}  # run_id -> job
        self.states: dict[str, str] = {}
        self.running_since: dict[str, float] = {}  # run_id -> when a poll first saw its job running

    def load(self, manifest: dict, run_ids=None) -> None:
        for run_id, entry in manifest["runs"].items():
            if (run_ids is None or run_id in run_ids) and entry.get("collected") is None and run_id not in self.jobs:
                self.jobs[run_id] = slurm_job(self.out, self.suite_name, entry["job_id"])

    def add(self, run_id: str, job: submitit.SlurmJob) -> None:
        self.jobs[run_id] = job

    def poll(self, manifest: dict) -> dict[str, str]:
        """Refresh the states (one sacct call), settle the jobs that ended (updating `manifest` in memory);
        return {run_id: status} of those settled now."""
        if not self.jobs:
            return {}
        next(iter(self.jobs.values())).get_info(mode="force")  # submitit's watcher asks for all jobs at once
        settled = {}
        queued = functools.cache(queued_job_ids)  # at most one squeue call per poll
        for run_id, job in list(self.jobs.items()):
            entry = manifest["runs"].get(run_id, {})
            state = final_state(job, entry, queued)
            self.states[run_id] = state or job.state
            if states.head(self.states[run_id]) in states.RUNNING_STATES:
                self.running_since.setdefault(run_id, time.monotonic())
            if state is None:
                continue
            status = settle(entry, run_id, self.suite_name, job, state, self.out)
            if status is None:
                continue
            settled[run_id] = status
            entry.update(collected=status, slurm_state=state)
            del self.jobs[run_id]
        return settled

    def counts(self, run_ids) -> dict[str, int]:
        """{finished, running, pending, failed} over `run_ids` (failed: ended without finishing)."""
        counts = {"finished": 0, "running": 0, "pending": 0, "failed": 0}
        for run_id in run_ids:
            if run_id in self.jobs:
                running = states.head(self.states.get(run_id, "PENDING")) in states.RUNNING_STATES
                counts["running" if running else "pending"] += 1
                continue
            record = store.read_record(store.run_dir(self.out, self.suite_name, run_id)) or {}
            counts["finished" if record.get("status") == RunStatus.FINISHED else "failed"] += 1
        return counts


    def eta_s(self, run_ids, now: float | None = None) -> float | None:
        """Seconds left, estimated from the wall time of the runs that ended with a result (their records'
        started → finished) and how long each running job has run (since a poll first saw it running); the
        running jobs stand for the cluster's parallelism. None before a run ended with a result."""
        durations = [seconds for run_id in run_ids if run_id not in self.jobs
                     for seconds in [_wall_time_s(store.read_record(store.run_dir(self.out, self.suite_name, run_id)))]
                     if seconds is not None]
        if not durations:
            return None
        mean, now = sum(durations) / len(durations), time.monotonic() if now is None else now
        running = [r for r in run_ids if r in self.jobs and r in self.running_since]
        pending = sum(r in self.jobs for r in run_ids) - len(running)
        left = mean * pending + sum(max(0.0, mean - (now - self.running_since[r])) for r in running)
        return left / max(1, len(running))


def _wall_time_s(record: dict | None) -> float | None:
    """A record's started → finished seconds, for a run that ended with a result (finished, diverged)."""
    try:
        if not RunStatus(record["status"]).is_result:
            return None
        return (datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(record["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def merge_collected(out: Path, suite_name: str, settled: dict[str, str], job_states: dict[str, str]) -> None:
    """Write settled statuses into the manifest file (re-read under the lock: others may have added runs)."""
    if not settled:
        return
    with manifest_lock(out, suite_name):
        manifest = read_manifest(out, suite_name)
        for run_id, status in settled.items():
            entry = manifest["runs"].get(run_id)
            if entry is not None and entry.get("collected") is None:
                entry.update(collected=status, slurm_state=job_states.get(run_id))
        write_manifest(out, suite_name, manifest)


def format_counts(suite_name: str, counts: dict[str, int], total: int) -> str:
    return (f"{suite_name}: {counts['finished']} finished, {counts['running']} running, {counts['pending']} "
            f"pending, {counts['failed']} failed/other (of {total})")


def wait_for(jobs: JobSet, run_ids: list[str], timeout_s: float, poll_s: float, progress: bool) -> bool:
    """Poll until every job is settled or `timeout_s` passes (Ctrl-C stops waiting); True if all settled."""
    deadline = time.monotonic() + timeout_s
    last_line, last_shown = None, 0.0
    manifest = read_manifest(jobs.out, jobs.suite_name)
    try:
        while True:
            merge_collected(jobs.out, jobs.suite_name, jobs.poll(manifest), jobs.states)
            line = format_counts(jobs.suite_name, jobs.counts(run_ids), len(run_ids))
            if progress and (line != last_line or time.monotonic() - last_shown > 60):
                eta = jobs.eta_s(run_ids) if jobs.jobs else None
                log.info("%s%s", line, "" if not jobs.jobs else "; time left unknown yet" if eta is None
                         else f"; about {_duration(eta)} left")
                last_line, last_shown = line, time.monotonic()
            if not jobs.jobs:
                return True
            if time.monotonic() > deadline:
                log.warning("%s: stopped waiting after %.1f min with %d job(s) still queued or running; they go "
                            "on. Run run-suite again (same --out) to collect them.", jobs.suite_name,
                            timeout_s / 60, len(jobs.jobs))
                return False
            time.sleep(min(poll_s, max(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        log.warning("%s: interrupted; %d job(s) keep running on the cluster. Run run-suite again (same --out) "
                    "to collect them, or scancel them.", jobs.suite_name, len(jobs.jobs))
        return False


def collect_slurm(suite_name: str, out: str | Path, wait: bool = False, timeout_s: float | None = None,
                  poll_s: float = DEFAULT_POLL_INTERVAL_S, progress: bool = False) -> dict[str, int]:
    """Collect the suite's submitted jobs from its manifest without submitting anything: settle the records
    of jobs that ended; with `wait`, poll until none is left (at most `timeout_s`, default
    `DEFAULT_WAIT_TIMEOUT_MIN`). Returns
    the counts {finished, running, pending, failed} over the manifest's runs (make-report calls this)."""
    out = Path(out).absolute()
    if not manifest_path(out, suite_name).exists():
        return {"finished": 0, "running": 0, "pending": 0, "failed": 0}
    manifest = read_manifest(out, suite_name)
    jobs = JobSet(out, suite_name)
    jobs.load(manifest)
    run_ids = list(manifest["runs"])
    if wait:
        wait_for(jobs, run_ids, DEFAULT_WAIT_TIMEOUT_MIN * 60.0 if timeout_s is None else timeout_s, poll_s, progress)
    else:
        merge_collected(out, suite_name, jobs.poll(manifest), jobs.states)
    counts = jobs.counts(run_ids)
    log.info(format_counts(suite_name, counts, len(run_ids)))
    return counts
