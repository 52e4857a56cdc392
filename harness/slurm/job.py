"""One run as a checkpointable SLURM job (what each task of the suite's job array executes)."""
from __future__ import annotations

import logging
import os
import sys
import threading

import submitit

from .. import distributed, store
from ..config import SlurmConfig
from ..cores import run_cores
from ..status import RunStatus
from ..suite import RunSpec
from .states import ended_resumable

log = logging.getLogger(__name__)


def job_id_from_env() -> str | None:
    """This job's id as submitit names it: ``<array>_<task>`` for an array task, else SLURM_JOB_ID."""
    array_id, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_id and task:
        return f"{array_id}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _log_to_job_stdout() -> None:
    """In the job's own process, the harness's messages go to its log file (job.paths.stdout)."""
    harness_log = logging.getLogger("harness")
    if not harness_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        harness_log.addHandler(handler)
        harness_log.setLevel(logging.INFO)


class SlurmRun(submitit.helpers.Checkpointable):
    """``SlurmRun(force, max_requeues)(spec, out)`` runs `runner.execute_run` inside a SLURM job, in each of its
    tasks: a job of several tasks trains the run data-parallel, one rank per task (harness/distributed.py);
    submitit calls `checkpoint` in rank 0 alone, whose stop every rank agrees on.

    The run trains in a worker thread; the main thread only waits on it (short joins, so submitit's USR2
    handler runs promptly). On preemption or time-out that handler calls `checkpoint`: the run stops at its
    next step boundary and saves (status ``preempted``), and the job is requeued to resume from there, at
    most ``max_requeues`` times over the run's life (the record's ``requeues``).
    """

    def __init__(self, force: bool = False, max_requeues: int = SlurmConfig.max_requeues,
                 checkpoint_wait_s: float = 60.0):
        self.force = force
        self.max_requeues = max_requeues
        self.checkpoint_wait_s = checkpoint_wait_s
        self.requeues: int | None = None  # the run's requeue count as this job knows it (None: not started)
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._box: dict = {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_stop", "_thread", "_box")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_runtime()

    def _requeues_so_far(self, previous: dict, job_id: str | None) -> int:
        """The record's count, plus one when this job resumes a run that another job's interruption ended
        (a resubmission by a later run-suite; an in-job requeue was counted by `checkpoint`)."""
        count = max(self.requeues or 0, int(previous.get("requeues") or 0))
        resubmitted = previous.get("slurm_job_id") not in (None, job_id)
        if self.requeues is None and not self.force and resubmitted and ended_resumable(previous):
            count += 1
        return count

    def __call__(self, spec: RunSpec, out: str) -> dict:
        from ..plugins import import_plugins
        from ..runner import execute_run

        import_plugins()  # the user's estimators and families, as in run-suite and its pool workers
        self._reset_runtime()
        _log_to_job_stdout()
        place = distributed.init_from_slurm(distributed.device_type_of(spec.config.training.device))
        previous = store.read_record(store.run_dir(out, spec.suite, spec.run_id)) or {}
        job_id = job_id_from_env()
        self.requeues = self._requeues_so_far(previous, job_id)
        threads = run_cores()
        extra = {"slurm_job_id": job_id, "requeues": self.requeues, "torch_threads": threads}
        log.info("run %s (%s) job %s, %d torch threads, requeues so far %d, rank %d of %d", spec.run_id,
                 spec.label, job_id, threads, self.requeues, place.rank, place.world)
        if place.world > 1:
            extra["world_size"] = place.world

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
        distributed.close()
        if "error" in self._box:
            raise self._box["error"]
        record = self._box.get("record")
        if not place.main:
            return {"run_id": spec.run_id, "status": f"rank {place.rank} of {place.world}", "slurm_job_id": job_id}
        status = record["status"] if record else "skipped (locked by another process)"
        log.info("run %s: %s", spec.run_id, status)
        return {"run_id": spec.run_id, "status": status, "slurm_job_id": job_id}

    def checkpoint(self, spec: RunSpec, out: str):
        """Stop the run at its next step boundary and return the resubmission (None: no requeue, because
        the run already ended or its requeue budget is spent)."""
        from ..runner import mark_run

        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(self.checkpoint_wait_s)
        alive = thread is not None and thread.is_alive()
        record = store.read_record(store.run_dir(out, spec.suite, spec.run_id)) or {}
        status = record.get("status")
        if not alive and thread is not None and status in (RunStatus.FINISHED, RunStatus.DIVERGED, RunStatus.ERROR):
            log.info("run %s already %s: not requeued", spec.run_id, status)
            return None
        if (self.requeues or 0) >= self.max_requeues:
            log.warning("run %s: checkpointed at step %s; no requeue left (slurm.max_requeues=%d): raise it or "
                        "the time limit, then run run-suite again", spec.run_id, record.get("step"),
                        self.max_requeues)
            return None
        self.force = False  # never throw away the checkpoint of a resumed run
        self.requeues = (self.requeues or 0) + 1
        if not alive:  # the run saved and left its lock: count the requeue in its record now
            with store.RunLock(store.run_dir(out, spec.suite, spec.run_id)) as lock:
                if lock.acquired:
                    mark_run(spec, out, status, requeues=self.requeues)
        log.info("run %s: checkpointed at step %s (status %s), requeue #%d%s", spec.run_id, record.get("step"),
                 status, self.requeues,
                 " (the run did not stop in time; resuming from its last checkpoint)" if alive else "")
        return submitit.helpers.DelayedSubmission(self, spec, out)
