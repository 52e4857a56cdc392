"""A suite's ``slurm:`` section → submitit's executor parameters and the harness's own SLURM knobs."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import submitit

from ..suite import Suite, SuiteError
from .files import SlurmError, submitit_folder
from .validation import parse_time, validate_slurm_config

DEFAULT_TIMEOUT_MIN = 60
DEFAULT_WAIT_TIMEOUT_MIN = 24 * 60
DEFAULT_POLL_INTERVAL_S = 10.0
DEFAULT_MAX_REQUEUES = 3
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


def slurm_settings(suite: Suite) -> SlurmSettings:
    """The suite's validated SLURM settings (raises SuiteError listing every problem)."""
    problems = validate_slurm_config(suite.slurm, str(suite.path))
    if problems:
        raise SuiteError("invalid suite:\n  " + "\n  ".join(problems))
    cfg = dict(suite.slurm or {})
    minutes = parse_time(cfg["time"]) if cfg.get("time") is not None else cfg.get("timeout_min", DEFAULT_TIMEOUT_MIN)
    generic = {  # submitit's cluster-independent names
        "name": cfg.get("job_name", suite.name), "timeout_min": minutes, "nodes": 1, "tasks_per_node": 1,
        "gpus_per_node": cfg.get("gpus_per_node"), "cpus_per_task": cfg.get("cpus_per_task"),
        "mem_gb": cfg.get("mem_gb"),
    }
    native = {  # SLURM-only options, prefixed slurm_
        "partition": cfg.get("partition"), "account": cfg.get("account"), "qos": cfg.get("qos"),
        "constraint": cfg.get("constraint"), "setup": list(cfg["setup"]) if cfg.get("setup") else None,
        "array_parallelism": cfg.get("array_parallelism"),
        "additional_parameters": dict(cfg["additional"]) if cfg.get("additional") else None,
        "use_srun": cfg.get("use_srun"), "signal_delay_s": cfg.get("signal_delay_s"),
    }
    parameters = {k: v for k, v in generic.items() if v is not None}
    parameters.update({f"slurm_{k}": v for k, v in native.items() if v is not None})
    return SlurmSettings(parameters=parameters, max_requeues=cfg.get("max_requeues", DEFAULT_MAX_REQUEUES),
                         wait_timeout_min=cfg.get("wait_timeout_min", DEFAULT_WAIT_TIMEOUT_MIN),
                         poll_interval_s=cfg.get("poll_interval_s", DEFAULT_POLL_INTERVAL_S))


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
