"""Submitting a suite to SLURM: one submitit job array of the runs that need a job, then (optionally) waiting."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import store
from ..status import RunStatus
from ..suite import RunSpec, Suite
from .collect import JobSet, format_counts, wait_for
from .files import SlurmError, manifest_lock, manifest_path, read_manifest, submitit_root, write_manifest
from .job import SlurmRun
from .settings import SlurmSettings, make_executor, slurm_settings
from .states import ended_resumable

log = logging.getLogger(__name__)


def runs_to_submit(suite: Suite, out: str | Path, force: bool = False, active: set[str] = frozenset(),
                   max_requeues: int | None = None) -> list[RunSpec]:
    """The suite's runs that need a job: not finished (any, with `force`), not queued/running already, and
    (unless `force`) not interrupted by the infrastructure more than `max_requeues` times."""
    todo, spent = [], []
    for spec in suite.runs:
        if spec.run_id in active:
            continue
        record = store.read_record(store.run_dir(Path(out).absolute(), spec.suite, spec.run_id))
        if not force and record is not None:
            if record.get("status") == RunStatus.FINISHED:
                continue
            if max_requeues is not None and ended_resumable(record) \
                    and int(record.get("requeues") or 0) >= max_requeues:
                spent.append(f"{spec.run_id} ({record.get('slurm_state') or record.get('status')})")
                continue
        todo.append(spec)
    if spent:
        log.warning("%s: not resubmitted, their %d requeue(s) are spent (slurm.max_requeues): %s. Raise "
                    "slurm.max_requeues (or the time limit / mem_gb) and run run-suite again.", suite.name,
                    max_requeues, ", ".join(spent))
    return todo


def sbatch_preview(suite: Suite, out: str | Path, force: bool = False, n: int | None = None) -> str:
    """What `run_slurm` would submit now, without calling sbatch: the submitit executor parameters (the
    sbatch options) and the array. n: the array size; default the runs left to submit (all runs if none
    is left, as with force)."""
    settings = slurm_settings(suite)
    if n is None:
        n = len(runs_to_submit(suite, out, force, max_requeues=settings.max_requeues)) or len(suite.runs)
    limit = min(settings.parameters.get("slurm_array_parallelism", 256), n)
    lines = [f"submitit.AutoExecutor(folder={str(submitit_root(out, suite.name) / '%j')!r}, cluster='slurm', "
             f"slurm_max_num_timeout={settings.max_requeues})",
             "executor.update_parameters("]
    lines += [f"    {key}={value!r}," for key, value in sorted(settings.parameters.items())]
    lines.append(")")
    lines.append(f"job array of {n} runs, at most {limit} at once" if n > 1 else "one job (a single run)")
    return "\n".join(lines)


def _submit(suite: Suite, out: Path, specs: list[RunSpec], force: bool, settings: SlurmSettings) -> list:
    executor = make_executor(suite, out, settings)
    run = SlurmRun(force=force, max_requeues=settings.max_requeues, checkpoint_wait_s=settings.checkpoint_wait_s)
    try:
        return executor.map_array(run, specs, [str(out)] * len(specs))
    except Exception as error:  # submitit's FailedSubmissionError carries sbatch's message
        raise SlurmError(f"sbatch refused the job array of suite {suite.name!r} ({len(specs)} runs): {error}\n"
                         f"Check the suite's slurm: section (partition, account, qos, time ...); "
                         f"the script is under {submitit_root(out, suite.name)}") from error


def run_slurm(suite: Suite, out: str | Path, force: bool = False, wait: bool = True, progress: bool = True) -> bool:
    """Run the suite on SLURM: settle the jobs of an earlier submission that ended, submit the runs that
    need a job as one array (recorded in the manifest), and with `wait` poll until every job has ended or
    ``slurm.wait_timeout_min`` passes. Returns True when every job of the suite has ended and been
    collected (the caller writes the report), False when it returned early (``wait=False``, the wait timed
    out, or Ctrl-C): the jobs go on and a later call collects them."""
    settings = slurm_settings(suite)
    out = Path(out).absolute()
    name = suite.name
    run_ids = [spec.run_id for spec in suite.runs]
    jobs = JobSet(out, name)
    with manifest_lock(out, name):
        manifest = read_manifest(out, name)
        jobs.load(manifest, run_ids=set(run_ids))
        settled = jobs.poll(manifest)  # jobs of an earlier submission: settle those that ended
        if settled:
            log.info("%s: collected %d job(s) of an earlier submission: %s", name, len(settled),
                     ", ".join(f"{r} {s}" for r, s in settled.items()))
        todo = runs_to_submit(suite, out, force, active=set(jobs.jobs), max_requeues=settings.max_requeues)
        live = len(jobs.jobs)
        if todo:
            submitted = _submit(suite, out, todo, force, settings)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            array_id = submitted[0].job_id.split("_")[0]
            manifest["arrays"].append({"job_id": array_id, "submitted": now, "runs": len(todo)})
            for spec, job in zip(todo, submitted):
                manifest["runs"][spec.run_id] = {
                    "job_id": job.job_id, "submitted": now, "submitted_ts": time.time(), "label": spec.label,
                    "profile": spec.profile, "config": spec.config.resolved, "collected": None,
                }
                jobs.add(spec.run_id, job)
            log.info("%s: submitted %d run(s) as job %s; %d still queued/running from before; logs under %s",
                     name, len(todo), array_id, live, submitit_root(out, name))
        else:
            log.info("%s: nothing to submit (%d queued/running from an earlier submission)", name, live)
        write_manifest(out, name, manifest)
    if not wait:
        if jobs.jobs:
            log.info("%s: not waiting (--no-wait); manifest %s. Run the same run-suite command again later to "
                     "collect the results.", name, manifest_path(out, name))
            return False
        return True
    done = wait_for(jobs, run_ids, settings.wait_timeout_min * 60, settings.poll_interval_s, progress)
    log.info("summary: %s", format_counts(name, jobs.counts(run_ids), len(run_ids)))
    return done
