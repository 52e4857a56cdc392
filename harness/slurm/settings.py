"""A suite's ``slurm:`` section → submitit's executor parameters and the harness's own SLURM knobs."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import submitit

from ..config import SlurmConfig
from ..suite import Suite
from .files import SlurmError, submitit_folder

DEFAULT_WAIT_TIMEOUT_MIN = SlurmConfig.wait_timeout_min
DEFAULT_POLL_INTERVAL_S = SlurmConfig.poll_interval_s
DEFAULT_SIGNAL_DELAY_S = 90  # submitit's default: USR2 this long before the time limit


@dataclass(frozen=True)
class SlurmSettings:
    """What `run_slurm` needs from the suite: `parameters` go to ``AutoExecutor.update_parameters``."""

    parameters: dict
    max_requeues: int
    wait_timeout_min: float
    poll_interval_s: float

    @property
    def checkpoint_wait_s(self) -> float:
        """How long a signalled run may take to reach its next step boundary and save (inside the signal
        delay, keeping 20 s for submitit to write the resubmission and requeue)."""
        return float(max(5, self.parameters.get("slurm_signal_delay_s", DEFAULT_SIGNAL_DELAY_S) - 20))


def data_parallel_problems(suite: Suite) -> list[str]:
    """Why the suite's runs cannot train on its jobs' tasks (README "Several GPUs and nodes"): a job of several
    tasks runs one data-parallel process per task, so a run may not start its own (training.world_size)
    and its batch must split into the tasks × training.accumulate equal slices."""
    tasks = suite.slurm.tasks()
    problems = []
    for spec in suite.runs:
        training = spec.config.training
        where = f"{suite.path}: run {spec.run_id} ({', '.join(f'{k}={v}' for k, v in spec.label.items())})"
        if tasks > 1 and training.world_size > 1:
            problems.append(f"{where}: training.world_size is {training.world_size} but each job has {tasks} "
                            "tasks (slurm.nodes × slurm.tasks_per_node, by default one per GPU), each one "
                            "process of the run; set training.world_size to 1")
        elif tasks > 1:
            problems += [f"{where}: training.{p.key}: {p.message}" for p in training.parallel_problems(tasks)]
    return problems


def slurm_settings(suite: Suite) -> SlurmSettings:
    """The suite's SLURM settings (its `SlurmConfig`, validated when the suite was loaded); SlurmError when the
    runs cannot train on the jobs' tasks (`data_parallel_problems`)."""
    cfg: SlurmConfig = suite.slurm
    problems = data_parallel_problems(suite)
    if problems:
        raise SlurmError("cannot submit:\n  " + "\n  ".join(problems))
    generic = {  # submitit's cluster-independent names
        "name": cfg.job_name or suite.name, "timeout_min": cfg.time_limit_min(), "nodes": cfg.nodes,
        "tasks_per_node": cfg.tasks_per_node_or_default(),
        "gpus_per_node": cfg.gpus_per_node, "cpus_per_task": cfg.cpus_per_task, "mem_gb": cfg.mem_gb,
    }
    native = {  # SLURM-only options, prefixed slurm_
        "partition": cfg.partition, "account": cfg.account, "qos": cfg.qos, "constraint": cfg.constraint,
        "setup": list(cfg.setup) if cfg.setup else None, "array_parallelism": cfg.array_parallelism,
        "additional_parameters": dict(cfg.additional) if cfg.additional else None, "use_srun": cfg.use_srun,
        "signal_delay_s": cfg.signal_delay_s,
    }
    parameters = {k: v for k, v in generic.items() if v is not None}
    parameters.update({f"slurm_{k}": v for k, v in native.items() if v is not None})
    return SlurmSettings(parameters=parameters, max_requeues=cfg.max_requeues, wait_timeout_min=cfg.wait_timeout_min,
                         poll_interval_s=cfg.poll_interval_s)


def make_executor(suite: Suite, out, settings: SlurmSettings) -> submitit.AutoExecutor:
    """submitit's AutoExecutor for the suite: folder <out>/<suite>/submitit/%j, the suite's parameters.
    submitit's own time-out budget is max_requeues: `SlurmRun` never asks for more requeues than that."""
    if shutil.which("srun") is None:
        raise SlurmError("--executor slurm: srun is not on PATH; run on a SLURM login node "
                         "(or start the local test cluster: bash scripts/local_slurm.sh up)")
    executor = submitit.AutoExecutor(folder=submitit_folder(out, suite.name), cluster="slurm",
                                     slurm_max_num_timeout=settings.max_requeues)
    executor.update_parameters(**settings.parameters)
    return executor
