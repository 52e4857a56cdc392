"""How many CPU cores this process may use: the machine's (`usable_cores`, which honours taskset and cgroup
cpusets) and the run's (`run_cores`: SLURM's cpus-per-task inside a job). Imports nothing heavy, so the
executors can ask before torch is loaded."""
from __future__ import annotations

import os

__all__ = ["run_cores", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (os.sched_getaffinity where the platform has it, else cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


def run_cores() -> int:
    """The cores given to this run: SLURM_CPUS_PER_TASK inside a SLURM job, else `usable_cores`."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    return usable_cores()
