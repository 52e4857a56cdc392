"""The SLURM executor: one submitit job array per suite, checkpointable runs, bounded collection.

    run-suite SUITE --executor slurm [--no-wait] [--set slurm.partition=gpu ...]

* The suite's top-level ``slurm:`` section (merged with ``--set slurm.key=value``) holds the SLURM settings;
  harness.config.SlurmConfig checks them when the suite is loaded, before anything is submitted (unknown keys
  get the closest valid name, wrong types are named ``slurm.<key>`` with the suite file) and documents every key.
* `run_slurm` submits the runs that are not finished (all with ``force``) as one job array through
  ``submitit.AutoExecutor(folder=<out>/<suite>/submitit/%j, cluster="slurm")``, at most
  ``slurm.array_parallelism`` at once, and records the job id of each run in ``<out>/<suite>/submitit/
  manifest.json``. With ``wait`` it polls the jobs (sacct, forced refreshes) until every job has ended or
  ``slurm.wait_timeout_min`` passes; without it, it returns at once and a later `run_slurm` (or
  `collect_slurm`) collects: jobs that ended without a finished record get their record written (cancelled,
  timeout, error with the traceback or the log tail), and only runs that are neither finished nor still
  queued/running are submitted again.
* Each array task runs `SlurmRun`, a ``submitit.helpers.Checkpointable``: it runs `runner.execute_run` in a
  worker thread with ``should_stop`` bound to an event. On preemption or time-out submitit's USR2 handler
  calls `SlurmRun.checkpoint`, which sets the event, waits (bounded) for the run to save its checkpoint at the
  next step boundary (status ``preempted``), counts the requeue in the record and returns the resubmission,
  so the requeued job resumes from the checkpoint. Records carry ``slurm_job_id``, ``requeues`` and
  ``torch_threads``.

Results are reproducible across executors only with the same number of torch threads: a SLURM job uses
``cpus_per_task`` threads (``SLURM_CPUS_PER_TASK``), the local executor torch's default (all cores).
"""
from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import submitit

from . import store
from .config import DEFAULT_TIMEOUT_MIN, ConfigError, SlurmConfig, parse_time  # noqa: F401  (re-exported)
from .suite import RunSpec, Suite

# -- configuration ----------------------------------------------------------------------------------------

DEFAULT_WAIT_TIMEOUT_MIN = SlurmConfig.wait_timeout_min
DEFAULT_POLL_INTERVAL_S = SlurmConfig.poll_interval_s
MANIFEST = "manifest.json"

#: sacct states of a job that is still queued or running (submitit's list plus the rarer ones).
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                 "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED", "READY",
                 "RESV_DEL_HOLD", "SPECIAL_EXIT", "UNKNOWN")
RUNNING_STATES = ("RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING")


class SlurmError(RuntimeError):
    """Submitting to or reading from SLURM failed; the message says what to check."""


def validate_slurm_config(cfg, source: str) -> list[str]:
    """Every problem of a ``slurm:`` section, one line each: ``<source>: slurm.<key>: <message>``."""
    try:
        SlurmConfig.from_section(cfg, where=source)
    except ConfigError as error:
        return error.problems
    return []


def slurm_settings(suite: Suite) -> dict:
    """The suite's SLURM settings (validated when the suite was loaded):
    ``native`` (submitit SlurmExecutor parameters, i.e. sbatch options), ``max_requeues``,
    ``wait_timeout_min``, ``poll_interval_s``."""
    cfg = suite.slurm
    native = {
        "job_name": cfg.job_name or suite.name,
        "time": cfg.time_limit_min(),
        "nodes": 1,
        "ntasks_per_node": 1,
        "partition": cfg.partition,
        "account": cfg.account,
        "qos": cfg.qos,
        "constraint": cfg.constraint,
        "gpus_per_node": cfg.gpus_per_node,
        "cpus_per_task": cfg.cpus_per_task,
        "mem": _convert_mem(cfg.mem_gb) if cfg.mem_gb is not None else None,
        "setup": list(cfg.setup) if cfg.setup else None,
        "array_parallelism": cfg.array_parallelism,
        "additional_parameters": dict(cfg.additional) if cfg.additional else None,
        "use_srun": cfg.use_srun,
        "signal_delay_s": cfg.signal_delay_s,
    }
    return {
        "native": {k: v for k, v in native.items() if v is not None},
        "max_requeues": cfg.max_requeues,
        "wait_timeout_min": cfg.wait_timeout_min,
        "poll_interval_s": cfg.poll_interval_s,
    }


def _convert_mem(mem_gb: float) -> str:
    from submitit.slurm.slurm import _convert_mem as convert

    return convert(mem_gb)


# -- paths, manifest --------------------------------------------------------------------------------------

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


@contextmanager
def _manifest_lock(out: str | Path, suite_name: str, timeout_s: float = 120.0):
    """An exclusive flock on the suite's manifest: two run-suite processes never submit the same runs."""
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the job ----------------------------------------------------------------------------------------------

def _job_id_from_env() -> str | None:
    array_id, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_id and task:
        return f"{array_id}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _job_threads() -> int:
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        return int(cpus)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class SlurmRun(submitit.helpers.Checkpointable):
    """One run as a checkpointable SLURM job: ``SlurmRun(force)(spec, out)`` runs `execute_run`.

    The run trains in a worker thread; the main thread only waits on it (short joins, so submitit's signal
    handler runs promptly). `checkpoint` is called by that handler on preemption or time-out.
    """

    def __init__(self, force: bool = False, checkpoint_wait_s: float = 60.0):
        self.force = force
        self.checkpoint_wait_s = checkpoint_wait_s
        self.requeues: int | None = None  # the run's requeue count as this job knows it (None: not started)
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._box: dict = {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_stop", "_thread", "_box", "_started")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_runtime()

    def __call__(self, spec: RunSpec, out: str) -> dict:
        from .runner import execute_run

        self._reset_runtime()
        self._started = time.time()  # ~ when submitit's signal handler started timing this job
        directory = store.run_dir(out, spec.suite, spec.run_id)
        previous = store.read_record(directory) or {}
        self.requeues = max(self.requeues or 0, int(previous.get("requeues") or 0))
        threads = _job_threads()
        extra = {"slurm_job_id": _job_id_from_env(), "requeues": self.requeues, "torch_threads": threads}
        print(f"[harness.slurm] run {spec.run_id} ({spec.label}) job {extra['slurm_job_id']}, "
              f"{threads} torch threads, requeues so far {self.requeues}", flush=True)

        def work():
            try:
                import torch

                torch.set_num_threads(threads)
                self._box["record"] = execute_run(spec, out, force=self.force, progress=False, extra=extra,
                                                  should_stop=self._stop.is_set)
            except BaseException as error:  # noqa: BLE001 — re-raised in the main thread
                self._box["error"] = error

        os.environ["OMP_NUM_THREADS"] = str(threads)
        self._thread = threading.Thread(target=work, name=f"run-{spec.run_id}", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.5)
        if "error" in self._box:
            raise self._box["error"]
        record = self._box.get("record")
        status = record["status"] if record else "skipped (locked by another process)"
        print(f"[harness.slurm] run {spec.run_id}: {status}", flush=True)
        return {"run_id": spec.run_id, "status": status, "slurm_job_id": extra["slurm_job_id"]}

    def checkpoint(self, spec: RunSpec, out: str):
        """Stop the run at its next step boundary, count the requeue, resubmit self (None: nothing to resume)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(self.checkpoint_wait_s)
        alive = thread is not None and thread.is_alive()
        directory = store.run_dir(out, spec.suite, spec.run_id)
        record = store.read_record(directory) or {}
        if not alive and thread is not None and record.get("status") in (store.FINISHED, *store.FAILED):
            print(f"[harness.slurm] run {spec.run_id} already {record['status']}: not requeued", flush=True)
            return None
        self.force = False  # never throw away the checkpoint of a resumed run
        if not self._will_requeue():
            print(f"[harness.slurm] run {spec.run_id}: checkpointed at step {record.get('step')}; no requeue left "
                  f"(timed out too many times: raise slurm.max_requeues or the time limit)", flush=True)
            return submitit.helpers.DelayedSubmission(self, spec, out)  # submitit ends the job (timeout)
        self.requeues = (self.requeues or 0) + 1
        if not alive:
            with store.RunLock(directory) as lock:  # read-modify-write; the resumed job also gets it in extra
                if lock.acquired:
                    record = store.read_record(directory)
                    if record is not None:
                        record["requeues"] = max(int(record.get("requeues") or 0), self.requeues)
                        store.write_json(directory / store.RECORD, record)
        print(f"[harness.slurm] run {spec.run_id}: checkpointed at step {record.get('step')} "
              f"(status {record.get('status')}), requeue #{self.requeues}"
              + (" (the run did not stop in time; resuming from its last checkpoint)" if alive else ""),
              flush=True)
        return submitit.helpers.DelayedSubmission(self, spec, out)


    def _will_requeue(self) -> bool:
        """Whether submitit's handler will requeue after this checkpoint: its time-out budget is not spent
        (it counts this signal as a time-out once the job ran min(0.8 T, T - 10 min)). Best effort: True if
        unknown (e.g. outside a submitit job)."""
        try:
            paths = submitit.JobEnvironment().paths
            delayed = submitit.helpers.DelayedSubmission.load(paths.submitted_pickle)
            limit_s = float(delayed._timeout_min) * 60
            timed_out = time.time() - self._started >= min(0.8 * limit_s, limit_s - 600)
            return delayed._timeout_countdown - int(timed_out) >= 0
        except Exception:  # noqa: BLE001
            return True


# -- submission -------------------------------------------------------------------------------------------

def runs_to_submit(suite: Suite, out: str | Path, force: bool = False, active: set[str] = frozenset()) -> list[RunSpec]:
    """The suite's runs that need a job: not finished (any, with `force`) and not queued/running already."""
    todo = []
    for spec in suite.runs:
        if spec.run_id in active:
            continue
        record = store.read_record(store.run_dir(Path(out).absolute(), spec.suite, spec.run_id))
        if not force and record is not None and record.get("status") == store.FINISHED:
            continue
        todo.append(spec)
    return todo


def _checkpoint_wait(native: dict) -> float:
    return float(max(5, native.get("signal_delay_s", 90) - 20))


def sbatch_preview(suite: Suite, out: str | Path, force: bool = False, n: int | None = None) -> str:
    """The sbatch script `run_slurm` would submit now, made by submitit's own script writer without calling
    sbatch. n: the array size; default the runs left to submit (all runs if none is left, as with force)."""
    from submitit.slurm.slurm import _make_sbatch_string

    settings = slurm_settings(suite)
    folder = submitit_folder(out, suite.name)
    if n is None:
        n = len(runs_to_submit(suite, out, force)) or len(suite.runs)
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n if n > 1 else None,
                               **settings["native"])


def make_executor(suite: Suite, out: str | Path, settings: dict | None = None) -> submitit.AutoExecutor:
    """submitit's AutoExecutor for the suite (folder <out>/<suite>/submitit/%j, the suite's sbatch options)."""
    settings = settings or slurm_settings(suite)
    if shutil.which("srun") is None:
        raise SlurmError("--executor slurm: srun is not on PATH; run on a SLURM login node "
                         "(or start the local test cluster: bash scripts/local_slurm.sh up)")
    executor = submitit.AutoExecutor(folder=submitit_folder(out, suite.name), cluster="slurm",
                                     slurm_max_num_timeout=settings["max_requeues"])
    executor.update_parameters(**{f"slurm_{k}": v for k, v in settings["native"].items()})
    return executor


def _submit(suite: Suite, out: Path, specs: list[RunSpec], force: bool, settings: dict) -> list:
    executor = make_executor(suite, out, settings)
    wait_s = _checkpoint_wait(settings["native"])
    try:
        with executor.batch():
            jobs = [executor.submit(SlurmRun(force=force, checkpoint_wait_s=wait_s), spec, str(out)) for spec in specs]
    except Exception as error:  # submitit's FailedSubmissionError carries sbatch's message
        raise SlurmError(f"sbatch refused the job array of suite {suite.name!r} ({len(specs)} runs): {error}\n"
                         f"Check the suite's slurm: section (partition, account, qos, time ...); "
                         f"the script is under {submitit_root(out, suite.name)}") from error
    return jobs


# -- job states and collection ----------------------------------------------------------------------------

def _slurm_job(out: Path, suite_name: str, job_id: str):
    from submitit.slurm.slurm import SlurmJob

    return SlurmJob(folder=submitit_folder(out, suite_name), job_id=job_id)


def _refresh_states(jobs: list) -> None:
    """One forced sacct call for every registered job (submitit's shared watcher)."""
    if not jobs:
        return
    watcher = type(jobs[0]).watcher
    for job in jobs:  # a state we consider active must never be cached as final by the watcher
        watcher._finished.discard(job.job_id)
    jobs[0].get_info(mode="force")


def _squeue_states() -> dict[str, str] | None:
    """{job id: state} of this user's jobs in the queue (array tasks as <A>_<i>); None if squeue fails."""
    try:
        output = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-u", str(os.getuid())],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if output.returncode != 0:
        return None
    states = {}
    for line in output.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            states[job_id] = state.strip() or "PENDING"
    return states


def _result_outcome(job) -> tuple[str, object] | None:
    path = job.paths.result_pickle
    if not path.exists():
        return None
    try:
        from submitit.core.utils import pickle_load

        return pickle_load(path)
    except Exception:  # noqa: BLE001 — half-written or unreadable: treat as absent for now
        return None


def job_state(job, entry: dict | None = None, queue: dict[str, str] | None = None) -> str:
    """The job's state: sacct's (from the watcher's cache; call `_refresh_states` first), corrected by
    `queue` (squeue's view) when given. A job still in the queue is active whatever sacct says (after a
    requeue sacct shows the previous instance, e.g. FAILED, while the job is PENDING again). An UNKNOWN job
    with a result pickle is COMPLETED/FAILED; one unknown to sacct and absent from the queue more than 60 s
    after submission is VANISHED."""
    state = (job.get_info(mode="cache").get("State") or "UNKNOWN").strip() or "UNKNOWN"
    if queue is not None and job.job_id in queue:
        return queue[job.job_id] if not is_active(state) or state.upper() == "UNKNOWN" else state
    if state.upper() == "UNKNOWN":
        outcome = _result_outcome(job)
        if outcome is not None:
            return "COMPLETED" if outcome[0] == "success" else "FAILED"
        age = time.time() - float((entry or {}).get("submitted_ts") or 0)
        if queue is not None and age > 60:
            return "VANISHED"
    return state


def is_active(state: str) -> bool:
    return state.split()[0].upper() in ACTIVE_STATES if state else True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _log_tail(job) -> str:
    parts = []
    for name in ("stderr", "stdout"):
        path = getattr(job.paths, name)
        tail = _tail(path)
        if tail:
            parts.append(f"--- last lines of {path} ---\n{tail}")
    return "\n".join(parts) or f"(no log files under {job.paths.folder})"


def _status_from_state(state: str, outcome) -> str:
    head = state.split()[0].upper()
    if head == "CANCELLED":
        return "cancelled"
    if head in ("TIMEOUT", "DEADLINE"):
        return "timeout"
    if head == "PREEMPTED":
        return "preempted"
    if outcome is not None and outcome[0] == "error" and "timed-out" in str(outcome[1]) \
            and "UncompletedJobError" in str(outcome[1]):
        return "timeout"
    return "error"


def collect_job(spec_info: dict, run_id: str, suite_name: str, job, state: str, out: Path) -> str | None:
    """Settle the record of a run whose job ended (state is final); return its status, or None if the run
    folder is locked (someone is still running it: try again later).

    A finished record is kept, and so is an error/diverged record the job's own run wrote. A job that ended
    COMPLETED ran `execute_run`, so its record stands. Otherwise the record gets the job's outcome: cancelled,
    timeout, or error with the job's traceback (result pickle) and its log tail."""
    directory = store.run_dir(out, suite_name, run_id)
    record = store.read_record(directory)
    mine = record is not None and record.get("slurm_job_id") == job.job_id
    if record is not None:
        status = record.get("status")
        if status == store.FINISHED or (mine and status in store.FAILED):
            return status
        if not mine and status in store.FAILED:
            return status  # the job never started the run (e.g. cancelled while pending): keep the last result
    head = state.split()[0].upper()
    if head == "COMPLETED" and mine:
        return record.get("status")
    outcome = _result_outcome(job)
    status = _status_from_state(state, outcome)
    if head == "COMPLETED":  # returned without running (the run folder was locked by another process)
        status = "error"
    with store.RunLock(directory) as lock:
        if not lock.acquired:
            return None
        record = store.read_record(directory) or {
            "run_id": run_id, "suite": suite_name, "label": spec_info.get("label"),
            "profile": spec_info.get("profile"), "config": spec_info.get("config"), "started": None,
            "step": None, "resumed": False, "attempts": 0, "requeues": 0,
        }
        if record.get("status") == store.FINISHED:
            return store.FINISHED
        record.update(status=status, finished=_now(), slurm_job_id=job.job_id, slurm_state=state)
        if status == "error":
            if head == "COMPLETED":
                detail = "the job completed without running the run (its folder was locked by another process)"
            elif outcome is not None and outcome[0] == "error":
                detail = f"the job raised:\n{outcome[1]}"
            elif head == "VANISHED":
                detail = "the job left the queue and sacct has no record of it (accounting down or purged)"
            else:
                detail = (f"SLURM ended the job with state {state} and no Python traceback (its process was "
                          f"killed, e.g. out of memory or kill -9, or the job failed to launch)")
            record["traceback"] = f"SLURM job {job.job_id}: {detail}\n{_log_tail(job)}"
        else:
            record["log_tail"] = _log_tail(job)
        store.write_json(directory / store.RECORD, record)
    return status


class _Tracker:
    """The manifest's uncollected jobs of one suite: refresh their states, settle the ones that ended."""

    def __init__(self, out: Path, suite_name: str):
        self.out, self.suite_name = out, suite_name
        self.jobs: dict[str, object] = {}  # run_id -> SlurmJob
        self.states: dict[str, str] = {}
        self.collected: dict[str, str] = {}

    def load(self, manifest: dict, run_ids=None) -> None:
        for run_id, entry in manifest["runs"].items():
            if run_ids is not None and run_id not in run_ids:
                continue
            if entry.get("collected") is None and run_id not in self.jobs:
                self.jobs[run_id] = _slurm_job(self.out, self.suite_name, entry["job_id"])

    def poll(self, manifest: dict) -> dict[str, str]:
        """Refresh, settle ended jobs (updating `manifest` in memory); return {run_id: status} settled now."""
        if not self.jobs:
            return {}
        _refresh_states(list(self.jobs.values()))
        queue: dict[str, str] | None = None
        queried = False
        settled = {}
        for run_id, job in list(self.jobs.items()):
            entry = manifest["runs"].get(run_id, {})
            state = job_state(job, entry)
            if not is_active(state) or state.upper() == "UNKNOWN":  # confirm with squeue before settling
                if not queried:
                    queue, queried = _squeue_states(), True
                state = job_state(job, entry, queue)
            self.states[run_id] = state
            if is_active(state):
                continue
            status = collect_job(entry, run_id, self.suite_name, job, state, self.out)
            if status is None:
                continue
            settled[run_id] = status
            self.collected[run_id] = status
            entry["collected"] = status
            entry["slurm_state"] = state
            del self.jobs[run_id]
        return settled

    def active_ids(self) -> set[str]:
        return set(self.jobs)


def _write_manifest(out: Path, suite_name: str, manifest: dict) -> None:
    store.write_json(manifest_path(out, suite_name), manifest)


def _merge_collected(out: Path, suite_name: str, collected: dict[str, str], states: dict[str, str]) -> None:
    """Write the settled statuses into the manifest file (re-read under the lock: others may have added)."""
    if not collected:
        return
    with _manifest_lock(out, suite_name):
        manifest = read_manifest(out, suite_name)
        for run_id, status in collected.items():
            entry = manifest["runs"].get(run_id)
            if entry is not None and entry.get("collected") is None:
                entry["collected"] = status
                entry["slurm_state"] = states.get(run_id)
        _write_manifest(out, suite_name, manifest)


def _run_statuses(out: Path, suite_name: str, run_ids) -> dict[str, str | None]:
    result = {}
    for run_id in run_ids:
        record = store.read_record(store.run_dir(out, suite_name, run_id))
        result[run_id] = record.get("status") if record else None
    return result


def _summary(out: Path, suite_name: str, run_ids, tracker: _Tracker) -> dict[str, int]:
    counts = {"finished": 0, "running": 0, "pending": 0, "failed": 0}
    statuses = _run_statuses(out, suite_name, run_ids)
    for run_id, status in statuses.items():
        if run_id in tracker.jobs:
            state = tracker.states.get(run_id, "UNKNOWN").split()[0].upper() if tracker.states.get(run_id) else ""
            counts["running" if state in RUNNING_STATES else "pending"] += 1
        elif status == store.FINISHED:
            counts["finished"] += 1
        else:
            counts["failed"] += 1
    return counts


def _format_counts(suite_name: str, counts: dict[str, int], total: int) -> str:
    return (f"[slurm] {suite_name}: {counts['finished']} finished, {counts['running']} running, "
            f"{counts['pending']} pending, {counts['failed']} failed/other (of {total})")


def _wait(tracker: _Tracker, out: Path, suite_name: str, run_ids: list[str], timeout_s: float,
          poll_s: float, progress: bool) -> bool:
    """Poll until every tracked job is settled or `timeout_s` passes; True if all settled."""
    deadline = time.monotonic() + timeout_s
    last_line, last_print = None, 0.0
    manifest = read_manifest(out, suite_name)
    try:
        while True:
            settled = tracker.poll(manifest)
            if settled:
                _merge_collected(out, suite_name, settled, tracker.states)
            counts = _summary(out, suite_name, run_ids, tracker)
            line = _format_counts(suite_name, counts, len(run_ids))
            if progress and (line != last_line or time.monotonic() - last_print > 60):
                print(line, flush=True)
                last_line, last_print = line, time.monotonic()
            if not tracker.jobs:
                return True
            if time.monotonic() > deadline:
                print(f"[slurm] {suite_name}: stopped waiting after {timeout_s / 60:.1f} min with "
                      f"{len(tracker.jobs)} job(s) still queued or running; they go on. Run run-suite again "
                      f"(same --out) to collect them.", flush=True)
                return False
            time.sleep(min(poll_s, max(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        print(f"[slurm] {suite_name}: interrupted; {len(tracker.jobs)} job(s) keep running on the cluster. "
              f"Run run-suite again (same --out) to collect them, or scancel them.", flush=True)
        return False


def collect_slurm(suite_name: str, out: str | Path, wait: bool = False, timeout_s: float | None = None,
                  poll_s: float = DEFAULT_POLL_INTERVAL_S, progress: bool = False) -> dict[str, int]:
    """Collect the suite's submitted jobs from its manifest without submitting anything: settle the records
    of jobs that ended; with `wait`, poll until none is left (or `timeout_s`). Returns the counts
    {finished, running, pending, failed} over the manifest's runs (make-report can call this)."""
    out = Path(out).absolute()
    if not manifest_path(out, suite_name).exists():
        return {"finished": 0, "running": 0, "pending": 0, "failed": 0}
    manifest = read_manifest(out, suite_name)
    tracker = _Tracker(out, suite_name)
    tracker.load(manifest)
    run_ids = list(manifest["runs"])
    if wait:
        _wait(tracker, out, suite_name, run_ids, timeout_s if timeout_s is not None else DEFAULT_WAIT_TIMEOUT_MIN * 60,
              poll_s, progress)
    else:
        settled = tracker.poll(manifest)
        _merge_collected(out, suite_name, settled, tracker.states)
    counts = _summary(out, suite_name, run_ids, tracker)
    print(_format_counts(suite_name, counts, len(run_ids)), flush=True)
    return counts


def run_slurm(suite: Suite, out: str | Path, force: bool = False, wait: bool = True, progress: bool = True) -> bool:
    """Run the suite on SLURM (see the module docstring). Returns True when every job of the suite has
    ended and been collected (the caller writes the report), False when it returned early (``wait=False``,
    the wait timed out, or Ctrl-C): the jobs go on and a later call collects them."""
    settings = slurm_settings(suite)
    out = Path(out).absolute()
    name = suite.name
    run_ids = [spec.run_id for spec in suite.runs]
    tracker = _Tracker(out, name)
    with _manifest_lock(out, name):
        manifest = read_manifest(out, name)
        tracker.load(manifest, run_ids=set(run_ids))
        if tracker.jobs:  # jobs of an earlier submission: settle those that ended, keep the live ones
            settled = tracker.poll(manifest)
            if progress and settled:
                print(f"[slurm] {name}: collected {len(settled)} job(s) of an earlier submission: "
                      + ", ".join(f"{r} {s}" for r, s in settled.items()), flush=True)
        todo = runs_to_submit(suite, out, force, active=tracker.active_ids())
        skipped = len(suite.runs) - len(todo) - len(tracker.jobs)
        if todo:
            jobs = _submit(suite, out, todo, force, settings)
            now, now_ts = _now(), time.time()
            array_id = jobs[0].job_id.split("_")[0]
            manifest["arrays"].append({"job_id": array_id, "submitted": now, "runs": len(todo)})
            for spec, job in zip(todo, jobs):
                manifest["runs"][spec.run_id] = {
                    "job_id": job.job_id, "submitted": now, "submitted_ts": now_ts, "label": spec.label,
                    "profile": spec.profile, "config": spec.config.resolved, "collected": None,
                }
                tracker.jobs[spec.run_id] = job
            limit = settings["native"].get("array_parallelism", 256)
            print(f"[slurm] {name}: submitted {len(todo)} run(s) as job {array_id}"
                  + (f" (array, at most {min(limit, len(todo))} at once)" if len(todo) > 1 else "")
                  + f"; {skipped} already finished, {len(tracker.jobs) - len(todo)} still queued/running "
                    f"from before; logs under {submitit_root(out, name)}", flush=True)
        else:
            print(f"[slurm] {name}: nothing to submit ({skipped} finished, {len(tracker.jobs)} queued/running "
                  f"from an earlier submission)", flush=True)
        _write_manifest(out, name, manifest)
    if not wait:
        if tracker.jobs:
            print(f"[slurm] {name}: not waiting (--no-wait); manifest {manifest_path(out, name)}. Run the same "
                  f"run-suite command again later to collect the results.", flush=True)
            return False
        return True
    done = _wait(tracker, out, name, run_ids, settings["wait_timeout_min"] * 60, settings["poll_interval_s"],
                 progress)
    counts = _summary(out, name, run_ids, tracker)
    print(_format_counts(name, counts, len(run_ids)).replace("[slurm]", "[slurm] summary:"), flush=True)
    return done
