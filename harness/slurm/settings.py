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


def slurm_settings(suite: Suite) -> SlurmSettings:
    """The suite's SLURM settings (its `SlurmConfig`, validated when the suite was loaded)."""
    cfg: SlurmConfig = suite.slurm
    generic = {  # submitit's cluster-independent names
        "name": cfg.job_name or suite.name, "timeout_min": cfg.time_limit_min(), "nodes": 1, "tasks_per_node": 1,
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
