"""Executors: how a suite's runs are spread. `local` runs them one after another in this process; with
`--jobs N` a process pool runs N at once and splits the cores between them (torch threads = cores / N).
Both call runner.execute_run, so the records are identical. The SLURM executor lives in harness/slurm.py.

A pool worker that dies (the out-of-memory killer's SIGKILL) does not end the suite: its run is recorded as
`error` with the signal, the runs the broken pool stopped on its other workers are resubmitted to a new
pool (they resume from their checkpoints), and the rest go on (README "Reliability").

This module imports neither torch nor the rest of the harness at import time: `run-suite --jobs N` starts
the pool (`start_pool`) first, so that the workers import torch and the harness while the parent process
does the same and loads the suite, instead of one after the other.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from tqdm.auto import tqdm

from .cores import usable_cores
from .status import RunStatus

if TYPE_CHECKING:
    from .suite import RunSpec

logger = logging.getLogger(__name__)


def cap_jobs(requested: int, runs_to_do: int, processes_per_run: int = 1) -> int:
    """The number of runs to train at once: `requested`, at most the runs left to do and as many as the cores
    hold when each run starts `processes_per_run` processes (`training.world_size`), at least one. A cap is
    logged in one line: more processes than cores only split the cores thinner."""
    cores = usable_cores()
    jobs = max(1, min(requested, cores // max(1, processes_per_run), runs_to_do))
    if jobs < requested:
        per_run = f", {processes_per_run} processes per run" if processes_per_run > 1 else ""
        logger.warning("--jobs %d capped to %d (%d cores%s, %d runs to do)", requested, jobs, cores, per_run,
                       runs_to_do)
    return jobs


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class SuiteProgress:
    """The suite's own progress line, beside each run's bar: runs finished, running, failed and pending, and
    the time left estimated from the runs trained so far.

    The executor says when a run is queued (`queue`), ended (`ended`) or taken back to be resubmitted
    (`drop`). At most `workers` queued runs are running, in queue order (a process pool hands its tasks to
    workers in submission order), each from the moment a slot freed. The estimate is the mean wall time of
    the runs trained to a result (finished, diverged) since this object was made, times the work left (pending runs, and what the mean leaves
    of each running one), divided by `workers`. Shown as a tqdm line, or logged at each ended run when there
    are no progress bars.
    """

    def __init__(self, total: int, workers: int, bar: bool, clock: Callable[[], float] = time.monotonic):
        self.total, self.workers, self.clock = total, workers, clock
        self.finished = self.failed = self.elsewhere = 0
        self.running: dict[str, float] = {}  # run id -> when it started (clock)
        self.waiting: deque[str] = deque()
        self.durations: list[float] = []
        self.since = time.time()
        self._bar = tqdm(total=total, bar_format="suite: {desc}", disable=not bar, dynamic_ncols=True)
        self._show()

    @property
    def pending(self) -> int:
        return self.total - self.finished - self.failed - self.elsewhere - len(self.running)

    def queue(self, run_ids) -> None:
        self.waiting.extend(run_ids)
        self._fill()
        self._show()

    def drop(self, run_id: str) -> None:
        """A run taken back (its pool broke) to be queued again: neither running nor ended."""
        self.running.pop(run_id, None)
        if run_id in self.waiting:
            self.waiting.remove(run_id)

    def ended(self, run_id: str, record: dict | None) -> None:
        """`record`: what execute_run returned (None: another run-suite process holds the run)."""
        started = self.running.pop(run_id, None)
        if started is None and run_id in self.waiting:  # ended before this model had it start
            self.waiting.remove(run_id)
        if record is None:
            self.elsewhere += 1
        elif record.get("status") == RunStatus.FINISHED:
            self.finished += 1
        else:
            self.failed += 1
        if started is not None and record is not None and self._trained_now(record) \
                and RunStatus(record["status"]).is_result:
            self.durations.append(self.clock() - started)
        self._fill()
        self._show(log=True)

    def eta_s(self) -> float | None:
        """Seconds left, estimated from the runs trained so far; None before the first one ended."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        now = self.clock()
        left = mean * self.pending + sum(max(0.0, mean - (now - start)) for start in self.running.values())
        return left / self.workers

    def line(self) -> str:
        done = self.finished + self.failed + self.elsewhere
        parts = [f"{self.finished} finished", f"{len(self.running)} running", f"{self.failed} failed",
                 f"{self.pending} pending"]
        if self.elsewhere:
            parts.append(f"{self.elsewhere} held by another run-suite")
        line = f"{done}/{self.total} runs done: {', '.join(parts)}"
        if done == self.total:
            return line
        eta = self.eta_s()
        return f"{line}; " + ("time left unknown yet" if eta is None else f"about {_duration(eta)} left")

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> SuiteProgress:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _trained_now(self, record: dict) -> bool:
        """Whether the record's run started since this object was made (not a finished run skipped)."""
        try:
            return datetime.fromisoformat(record["started"]).timestamp() >= int(self.since)
        except (KeyError, TypeError, ValueError):
            return False

    def _fill(self) -> None:
        while self.waiting and len(self.running) < self.workers:
            self.running[self.waiting.popleft()] = self.clock()

    def _show(self, log: bool = False) -> None:
        if not self._bar.disable:
            self._bar.n = self.total - self.pending - len(self.running)
            self._bar.set_description_str(self.line())
        elif log:
            logger.info("%s", self.line())


def run_local(runs: list[RunSpec], out: Path, force: bool = False, progress: bool = True) -> list[dict]:
    """Run every spec in this process, in order."""
    from .runner import execute_run

    records = []
    with SuiteProgress(len(runs), 1, bar=progress and len(runs) > 1) as suite_progress:
        suite_progress.queue(spec.run_id for spec in runs)
        for spec in runs:
            record = execute_run(spec, out, force=force, progress=progress)
            suite_progress.ended(spec.run_id, record)
            if record is not None:
                records.append(record)
    return records


#: What every worker needs, imported once in the forkserver that forks the workers: torch, the harness, and
#: torch._dynamo, which torch.optim imports when the first optimiser is built (over a second).
WORKER_MODULES = ["torch", "torch._dynamo", "harness.runner", "harness.train"]


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver on Linux: one clean process imports WORKER_MODULES once and forks each worker from there,
    before any torch thread exists. spawn elsewhere (each worker imports): macOS system frameworks are not
    safe to use in a child forked without exec, which is why spawn is Python's default there."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - macOS, Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def _pool_worker_init(threads: int, environment: dict[str, str]) -> None:
    """Torch threads, the environment of the pool's creator now (a forkserver, started once per process,
    would otherwise hand on the environment of its own start), and the user's plugins. Ctrl-C is the parent's
    to handle: it stops the workers itself (README "Reliability")."""
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing one: a named semaphore that a killed worker would leak (the
    # resource tracker warns about it at exit); workers show no bars, a thread lock is enough.
    tqdm.set_lock(threading.RLock())
    os.environ.clear()
    os.environ.update(environment)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    for module in WORKER_MODULES:  # already there when forked from the forkserver
        importlib.import_module(module)
    from .plugins import import_plugins

    import_plugins()
    import torch

    torch.set_num_threads(threads)


def _pool_run(spec: RunSpec, out: str, force: bool, threads: int, pool_id: str) -> dict | None:
    """execute_run in a worker; the record names the worker (pool and pid), so that the parent can tell
    which run a worker was on if it dies."""
    import torch

    from .runner import execute_run

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return execute_run(spec, out, force=force, progress=False,
                       extra={"pool_worker": {"pool": pool_id, "pid": os.getpid()}})


def start_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of `jobs` workers (at most one per core) with cores / jobs torch threads each, starting now
    (`_worker_context`).

    A ProcessPoolExecutor starts a worker per submitted task, and starting one waits for the forkserver's
    imports; one empty task per worker is submitted from a background thread, so the caller goes on (to
    import torch and load the suite) meanwhile.
    """
    jobs = min(jobs, usable_cores())
    threads = max(1, usable_cores() // jobs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context(), initializer=_pool_worker_init,
                               initargs=(threads, dict(os.environ)))

    def start_workers():
        try:
            for _ in range(jobs):
                pool.submit(os.getpid)
        except RuntimeError:  # the caller shut the pool down first (its suite did not load)
            pass

    threading.Thread(target=start_workers, name="start-pool-workers", daemon=True).start()
    return pool


def _worker_processes(pool: ProcessPoolExecutor) -> dict:
    """pid -> multiprocessing.Process of the pool's workers. ProcessPoolExecutor has no public way to learn
    how a worker ended or to stop one; it keeps them in `_processes` (CPython 3.8 to 3.13)."""
    return dict(pool._processes or {})


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (SIGTERM; Ctrl-C): their runs keep the record `running` and resume from their
    checkpoint at the next run-suite."""
    for process in _worker_processes(pool).values():
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_pool(runs: list[RunSpec], out: Path, jobs: int, force: bool = False, progress: bool = True,
             pool: ProcessPoolExecutor | None = None) -> list[dict]:
    """Run specs in `jobs` worker processes with cores / jobs torch threads each (`pool`: from start_pool,
    with at least `jobs` workers).

    When a worker dies, the pool breaks: every run it had not returned fails with BrokenProcessPool. The run
    of the dead worker is recorded as `error` (`_settle_lost_run`), the others go to a new pool. On
    KeyboardInterrupt the workers are stopped before it propagates. The last pool is shut down without
    waiting for its idle workers to exit: the caller goes on, e.g. to the report, while they do.
    """
    records = []
    todo = list(runs)
    with SuiteProgress(len(runs), jobs, bar=progress) as suite_progress:
        while todo:
            pool = pool or start_pool(jobs)
            try:
                done, todo = _pool_round(pool, todo, Path(out), jobs, force, suite_progress)
            except BaseException:  # KeyboardInterrupt: no worker may train on after run-suite returns
                stop_pool(pool)
                raise
            records += done
            if todo:
                logger.warning("the pool broke: %d run(s) go to a new pool of %d workers (a run stopped mid-way "
                               "resumes from its checkpoint)", len(todo), jobs)
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
    order = {spec.run_id: i for i, spec in enumerate(runs)}
    return sorted(records, key=lambda record: order[record["run_id"]])


def _pool_round(pool: ProcessPoolExecutor, specs: list[RunSpec], out: Path, jobs: int, force: bool,
                suite_progress: SuiteProgress) -> tuple[list[dict], list[RunSpec]]:
    """Submit `specs` to `pool`; return the records of the runs that ended and the specs to resubmit (those
    a broken pool stopped or never started)."""
    pool_id = uuid.uuid4().hex
    threads = max(1, usable_cores() // jobs)
    futures = {pool.submit(_pool_run, spec, str(out), force, threads, pool_id): spec for spec in specs}
    suite_progress.queue(spec.run_id for spec in specs)
    records, lost = [], []
    for future in as_completed(futures):
        spec = futures[future]
        try:
            record = future.result()
        except BrokenProcessPool:
            lost.append(spec)
            continue
        suite_progress.ended(spec.run_id, record)
        if record is not None:
            records.append(record)
    if not lost:
        return records, []

    processes = _worker_processes(pool)
    pool.shutdown(wait=True)  # every worker has exited: exit codes known, run locks released
    exit_codes = {pid: process.exitcode for pid, process in processes.items()}
    resubmit, started = [], False
    lost_ids = {spec.run_id for spec in lost}
    for spec in (spec for spec in specs if spec.run_id in lost_ids):
        record, on_this_pool = _settle_lost_run(spec, out, pool_id, exit_codes, jobs)
        started |= on_this_pool
        if record is None:
            suite_progress.drop(spec.run_id)
            resubmit.append(spec)
        else:
            suite_progress.ended(spec.run_id, record)
            records.append(record)
    if not started and len(lost) == len(specs):
        raise BrokenProcessPool(f"the process pool broke before any run started on it (worker exit codes "
                                f"{sorted(exit_codes.values(), key=str)}); see the messages above")
    return records, resubmit


def _settle_lost_run(spec: RunSpec, out: Path, pool_id: str, exit_codes: dict[int, int | None],
                     jobs: int) -> tuple[dict | None, bool]:
    """After the pool broke: (the `error` record written for a run whose worker died, or None to resubmit
    it; whether it had started on this pool).

    The record names the worker that ran it last (`_pool_run`). A run of this pool still `running` was on a
    worker when the pool broke: SIGTERM is how the pool stops the survivors (resubmitted; they resume from
    their checkpoint), any other end is the death that broke the pool. Everything is decided under the
    run's lock, so a run another run-suite process took meanwhile is left to it.
    """
    from . import store
    from .runner import mark_run

    directory = store.run_dir(out, spec.suite, spec.run_id)
    with store.RunLock(directory) as lock:
        if not lock.acquired:  # another process holds it now: the resubmitted task skips it
            return None, False
        record = store.read_record(directory) or {}
        worker = record.get("pool_worker") or {}
        if worker.get("pool") != pool_id:
            return None, False
        exit_code = exit_codes.get(worker.get("pid"))
        if record.get("status") != RunStatus.RUNNING or exit_code == -signal.SIGTERM:
            return None, True
        summary, fields = _death_fields(worker["pid"], exit_code, jobs)
        logger.warning("run %s (%s): %s", spec.run_id, " ".join(f"{k}={v}" for k, v in spec.label.items()), summary)
        return mark_run(spec, out, RunStatus.ERROR, **fields), True


def _death_fields(pid: int, exit_code: int | None, jobs: int) -> tuple[str, dict]:
    """A one-line summary of a worker's death, and the record fields of its run: the signal (or exit code)
    and a traceback-like text that says what happened and how to resume."""
    if exit_code is not None and exit_code < 0:
        name = signal.Signals(-exit_code).name
        fields, how = {"killed_by_signal": name}, f"was killed by {name}"
    else:
        fields, how = {"worker_exit_code": exit_code}, f"exited with code {exit_code}"
    summary = f"its pool worker (pid {pid}) {how} before it could write the run's record"
    hint = ""
    if exit_code == -signal.SIGKILL:
        hint = (" SIGKILL is what the out-of-memory killer sends (see `dmesg`); fewer --jobs or a smaller "
                "training.batch_size need less memory.")
    fields["traceback"] = (
        f"WorkerDied: run-suite --jobs {jobs}: {summary}.{hint}\nThe suite's other runs went on. Run the same "
        f"run-suite command again to resume this run.\n")
    return summary, fields
