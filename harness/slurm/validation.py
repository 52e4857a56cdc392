"""Validation of a suite's ``slurm:`` section: every problem named with the suite file and key path."""
from __future__ import annotations

import difflib
import math
import re

#: Every key of a suite's ``slurm:`` section: (expected type, description).
SLURM_KEYS: dict[str, tuple[str, str]] = {
    "partition": ("str", "partition to submit to (sbatch --partition)"),
    "account": ("str", "account to charge (sbatch --account)"),
    "qos": ("str", "quality of service (sbatch --qos)"),
    "constraint": ("str", "node features (sbatch --constraint)"),
    "gpus_per_node": ("int", "GPUs per job (sbatch --gpus-per-node)"),
    "cpus_per_task": ("int", "CPUs per job; also the torch thread count of the run"),
    "mem_gb": ("number", "memory per job in GB (sbatch --mem)"),
    "time": ("str", 'time limit per job as a quoted string: "HH:MM:SS", "D-HH:MM:SS", "MM:SS", "D-HH" ...'),
    "timeout_min": ("int", "time limit per job in minutes (instead of time)"),
    "setup": ("list", "shell lines run before the job's command (module load, conda activate ...)"),
    "array_parallelism": ("int", "how many runs of the array run at once (sbatch --array=0-N%limit)"),
    "max_requeues": ("int", "how many times a run may resume after a time-out, preemption, node failure or OOM"),
    "additional": ("dict", "extra sbatch options written verbatim as #SBATCH --key=value (true: a bare flag)"),
    "use_srun": ("bool", "run python under srun inside the batch script (default true)"),
    "signal_delay_s": ("int", "seconds before the time limit at which the run is told to checkpoint"),
    "job_name": ("str", "job name (default: the suite name)"),
    "wait_timeout_min": ("number", "how long run-suite waits for the jobs before returning (default 1440)"),
    "poll_interval_s": ("number", "seconds between job-state polls while waiting (default 10)"),
}

_TIME_RE = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_time(text: str) -> int:
    """A SLURM time string → whole minutes (seconds round up). Accepts SLURM's formats: "MM", "MM:SS",
    "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS". Raises ValueError otherwise."""
    match = _TIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a SLURM time; use \"HH:MM:SS\", \"D-HH:MM:SS\" or \"MM:SS\"")
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 1:  # MM
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        hours, (minutes, seconds) = 0, parts
    else:  # HH:MM:SS
        hours, minutes, seconds = parts
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is a time limit of zero")
    return math.ceil(total / 60)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_slurm_config(cfg, source: str) -> list[str]:
    """Every problem of a ``slurm:`` section, one line each: ``<source>: slurm.<key>: <message>``."""
    problems: list[str] = []

    def add(key: str | None, message: str) -> None:
        problems.append(f"{source}: slurm{'.' + key if key else ''}: {message}")

    if cfg is None:
        return problems
    if not isinstance(cfg, dict):
        add(None, f"expected a mapping of SLURM settings ({', '.join(SLURM_KEYS)}), got {cfg!r}")
        return problems
    for key, value in cfg.items():
        if key not in SLURM_KEYS:
            hint = difflib.get_close_matches(str(key), list(SLURM_KEYS), n=1, cutoff=0.5)
            add(str(key), f"unknown key {key!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                + f" Valid keys: {', '.join(sorted(SLURM_KEYS))}")
            continue
        kind = SLURM_KEYS[key][0]
        got = f"got {value!r} ({type(value).__name__})"
        if key == "time":
            if _is_int(value):
                add(key, f"got the integer {value}, not a time string. YAML reads an unquoted H:MM or MM:SS "
                         f"as a base-60 number (10:30 becomes 630), so a time must be quoted: "
                         f'time: "10:30" (or --set \'slurm.time="10:30"\'); for minutes use timeout_min: {value}')
            elif not isinstance(value, str):
                add(key, f'expected a quoted time string such as "HH:MM:SS", "D-HH:MM:SS" or "MM:SS", {got}')
            else:
                try:
                    parse_time(value)
                except ValueError as error:
                    add(key, str(error))
        elif kind == "str":
            if not isinstance(value, str) or not value.strip():
                add(key, f"expected a non-empty string, {got}")
        elif kind == "int":
            low = {"cpus_per_task": 1, "array_parallelism": 1, "timeout_min": 1}.get(key, 0)
            if not _is_int(value):
                add(key, f"expected an integer, {got}")
            elif value < low:
                add(key, f"expected an integer >= {low}, got {value}")
        elif kind == "number":
            if not _is_number(value):
                add(key, f"expected a number, {got}")
            elif value <= 0:
                add(key, f"expected a positive number, got {value}")
        elif kind == "bool":
            if not isinstance(value, bool):
                add(key, f"expected true or false, {got}")
        elif kind == "list":
            if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
                add(key, f"expected a list of shell lines (strings), {got}")
        elif kind == "dict":
            if not isinstance(value, dict):
                add(key, f"expected a mapping of sbatch option to value, e.g. {{mail-type: END}}, {got}")
            else:
                for option, option_value in value.items():
                    if not isinstance(option, str) or not option.strip() or option.startswith("-"):
                        add(f"{key}.{option}", "expected an sbatch option name without dashes, e.g. mail-type")
                    elif not (isinstance(option_value, (str, bool)) or _is_number(option_value)):
                        add(f"{key}.{option}", f"expected a string, number or true, got {option_value!r} "
                                               f"({type(option_value).__name__})")
    if cfg.get("time") is not None and cfg.get("timeout_min") is not None:
        add("time", "set either time or timeout_min, not both")
    return problems
