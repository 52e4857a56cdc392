"""The SLURM executor: one submitit job array per suite, checkpointable runs, bounded collection.

    run-suite SUITE --executor slurm [--no-wait] [--set slurm.partition=gpu ...]

Only submitit's public API is used (``AutoExecutor.update_parameters``, ``map_array``, ``Job.state`` /
``done()`` / ``exception()`` / ``paths``, ``helpers.Checkpointable``):

* `settings` — the suite's ``slurm:`` section → submitit executor parameters.
* `submit.run_slurm` — submits the runs that need a job as one array under ``<out>/<suite>/submitit/%j``
  and records each run's job id in ``manifest.json``; with ``wait`` it polls (bounded by
  ``slurm.wait_timeout_min``), without it a later `run_slurm` or `collect_slurm` collects.
* `job.SlurmRun` — each array task: `runner.execute_run` in a worker thread; on preemption or time-out
  (USR2) the run stops at a step boundary and the job is requeued to resume from its checkpoint.
* `collect` / `states` — jobs that ended without the run settling its record are marked through
  `runner.mark_run`: cancelled, timeout/preempted (resumable, as are NODE_FAIL and OUT_OF_MEMORY, at most
  ``slurm.max_requeues`` times), or error with the traceback or log tail.

Results are reproducible across executors only with the same number of torch threads: a SLURM job uses
``cpus_per_task`` threads (``SLURM_CPUS_PER_TASK``), the local executor torch's default (all cores).
"""
from .collect import collect_slurm
from .files import SlurmError, manifest_path, read_manifest, submitit_root
from .job import SlurmRun
from .settings import make_executor, slurm_settings
from .submit import run_slurm, runs_to_submit, sbatch_preview

__all__ = ["SlurmError", "SlurmRun", "collect_slurm", "make_executor", "manifest_path", "read_manifest",
           "run_slurm", "runs_to_submit", "sbatch_preview", "slurm_settings", "submitit_root"]
