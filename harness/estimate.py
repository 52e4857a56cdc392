"""`run-suite SUITE --estimate`: what a suite costs, measured on this machine before anything is submitted.

For each distinct model/training configuration of the suite (runs that differ only by seed, or by an estimator
of the same cost class, count once), the model is built on the run's device (`training.device` resolved) and a
few optimisation steps are timed on random input of the run's shape, after warm-up steps that are not timed.
No dataset is read: the input shape comes from the data section (`size`, `frames`) and the model's channels.
The steps per run are the trainer's (`harness.train.total_steps`) from the train-set size: the dataset's own
length when its folder is here, else the documented size of a dataset named by the folder (`DOCUMENTED_TRAIN_SIZES`).

A GAN family runs its discriminator only from `disc_start` on (paper Table 9): when that switch falls inside the
run, both phases are timed and the projection weights each by its number of steps.

Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On the CPU it is the growth of the process's peak
resident set (VmHWM, reset through /proc/self/clear_refs before each measurement, after freed memory is handed
back to the OS with malloc_trim; where that is unavailable, the growth of getrusage's ru_maxrss, a lower bound). On the CPU, a configuration whose memory projected from
batches of 1 and 2 exceeds the available RAM is reported as not fitting instead of being run.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import estimators
from models import perceptual

from . import data as data_module
from .config import RunConfig
from .train import Trainer, resolve_device, seed_everything, total_steps

logger = logging.getLogger(__name__)

#: Train-split sizes of the paper's datasets, for a run whose folder is not on this machine; a folder whose name
#: is a key (case-insensitive) gets that size. Sources: ImageNet-1k (ILSVRC 2012) train set; taming-transformers'
#: FacesHQ = FFHQ train list (60,000 of the 70,000 images) + CelebA-HQ train list (25,000 of 30,000);
#: BAIR robot pushing train set (43,264 sequences); UCF-101 train split 1 (9,537 of 13,320 videos).
DOCUMENTED_TRAIN_SIZES = {
    "imagenet": (1_281_167, "ImageNet-1k train"),
    "ffhq_celebahq": (85_000, "FFHQ train 60,000 + CelebA-HQ train 25,000 (taming-transformers FacesHQ)"),
    "bair": (43_264, "BAIR robot pushing train sequences"),
    "ucf101": (9_537, "UCF-101 train split 1"),
}

GIB = 1024 ** 3


@dataclass
class Configuration:
    """A group of the suite's runs of one cost: the run timed for all of them and how many they are."""

    config: RunConfig
    label: str
    runs: int
    #: processes of each run (training.world_size × the SLURM job's tasks): each steps on its slice of the batch
    processes: int = 1


@dataclass
class Estimate:
    """The measurement of one configuration; `problem` says why it has no timing (then the numbers are None)."""

    label: str
    runs: int
    batch_size: int
    steps: int | None
    steps_source: str
    step_s: float | None = None
    peak_bytes: int | None = None
    problem: str | None = None
    #: processes of each run; `batch_size` is one process's slice, `step_s` and `peak_bytes` one process's
    processes: int = 1

    @property
    def images_per_s(self) -> float | None:
        """Items per second of the whole run (every process)."""
        return None if self.step_s is None else self.batch_size * self.processes / self.step_s

    @property
    def device_hours_per_run(self) -> float | None:
        return None if self.hours_per_run is None else self.hours_per_run * self.processes

    @property
    def hours_per_run(self) -> float | None:
        if self.step_s is None or self.steps is None:
            return None
        return self.step_s * self.steps / 3600.0


# -- grouping -------------------------------------------------------------------------------------------------

def cost_key(config: RunConfig) -> str:
    """What decides a run's cost: everything but the seed and the estimator, which counts by its kind (how it
    reaches the encoder's gradient): the transport estimators (STE, the rotation trick, ...; paper §4) cost the
    same; the decoder-aware ones (the Hessian approximation, exact gradients; paper §3) both add decoder passes
    and are timed as one, by the first of them in the suite."""
    resolved = {k: v for k, v in config.resolved.items() if k not in ("seed", "estimator")}
    kind = estimators.estimator_class(config.estimator.name).kind
    return repr(sorted((section, repr(value)) for section, value in resolved.items())) + f"|{kind}"


def configurations(suite) -> list[Configuration]:
    """The suite's runs grouped by `cost_key`, in suite order; each labelled by what varies across the groups."""
    groups: dict[str, list] = {}
    for spec in suite.runs:
        groups.setdefault(cost_key(spec.config), []).append(spec)
    varying = [key for key in dict.fromkeys(k for spec in suite.runs for k in spec.label) if key != "seed"]
    result = []
    for specs in groups.values():
        first = specs[0]
        names = sorted({spec.config.estimator.name for spec in specs})
        parts = [f"{k}={first.label[k]}" for k in varying if k in first.label and k != "estimator.name"]
        parts.append("/".join(names))
        processes = first.config.training.world_size * suite.slurm.tasks()
        result.append(Configuration(first.config, ", ".join(parts), len(specs), processes))
    return result


# -- shapes and sizes -----------------------------------------------------------------------------------------

def input_shape(config: RunConfig) -> tuple[int, ...] | None:
    """The shape of one training item, from the data section and the model's channels; None for a family
    that reads no dataset (the synthetic problems of paper appendix A.2, A.4)."""
    if config.data is None:
        return None
    kind = data_module.dataset_kind(config.data.name)
    channels = getattr(config.model.params, "in_channels", 3)
    side = getattr(config.data.params, "size", None) or config.model.params.resolution
    if kind == "video":
        return (channels, config.data.params.frames, side, side)
    return (channels, side, side)


def train_size(config: RunConfig) -> tuple[int | None, str]:
    """(size of the run's train split, where it comes from); size None when it cannot be known here."""
    root = getattr(config.data.params, "root", None)
    if root is not None and data_module.root_problem(config.data) is not None:
        documented = DOCUMENTED_TRAIN_SIZES.get(Path(root).name.lower())
        if documented is None:
            return None, (f"data.root {root} is not here and its name is none of "
                          f"{', '.join(DOCUMENTED_TRAIN_SIZES)}: set training.steps")
        return documented[0], f"documented: {documented[1]}"
    return len(data_module.build_dataset(config.data, "train", config.seed)), "dataset"


def run_steps(config: RunConfig) -> tuple[int | None, str]:
    """(the run's optimiser steps as the trainer counts them, where the count comes from)."""
    if config.training.steps is not None:
        return config.training.steps, "training.steps"
    size, source = train_size(config)
    return (None if size is None else total_steps(config.training, size)), source


def discriminator_switch(config: RunConfig) -> int:
    """The step from which the model trains a discriminator (0: from the start or never)."""
    params = config.model.params
    if getattr(params, "disc_weight", 0) and getattr(params, "disc_start", 0) > 0:
        return params.disc_start
    return 0


# -- memory ---------------------------------------------------------------------------------------------------

class HostMemory:
    """Peak resident-set growth of this process during a block (see the module docstring for the method)."""

    def __init__(self):
        self.exact = _reset_peak_rss()
        self.method = ("peak RSS growth (VmHWM)" if self.exact
                       else "peak RSS growth (ru_maxrss, a lower bound)")

    def start(self) -> None:
        _release_free_heap()
        _reset_peak_rss()
        self.baseline = _status_kib("VmRSS") if self.exact else _maxrss_kib()

    def peak_growth(self) -> int:
        peak = _status_kib("VmHWM") if self.exact else _maxrss_kib()
        return max(0, peak - self.baseline) * 1024


def _release_free_heap() -> None:
    """Hand memory that was freed but is still resident back to the OS (glibc's malloc_trim), so that what the
    measured block allocates grows the resident set instead of reusing it unseen; nothing elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmHWM") > 0
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def available_host_bytes() -> int:
    """Memory available to new allocations (MemAvailable; else the free physical pages)."""
    try:
        return _meminfo_kib("MemAvailable") * 1024
    except (OSError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/meminfo has no {field}")


# -- timing ---------------------------------------------------------------------------------------------------

class StepTimer(Trainer):
    """A `Trainer` without data: the run's model and optimisers on its device, stepped on random batches through
    `Trainer.step` (so the timed step is the training step itself, autocast included)."""

    def __init__(self, config: RunConfig, device: torch.device, steps: int):
        super().__init__(config, tempfile.gettempdir(), progress=False)
        self.device = device
        self.steps = steps
        seed_everything(config.seed)
        self.build_model()  # the run's model, speed settings (TF32, channels-last, compile) and optimisers
        self.model.train()

    def batch(self, shape: tuple[int, ...], batch_size: int) -> torch.Tensor:
        batch = torch.rand((batch_size, *shape), device=self.device) * 2 - 1
        return batch.contiguous(memory_format=self.memory_format) if batch.ndim == 4 else batch

    def time_steps(self, batch: torch.Tensor, at_step: int, warmup: int, timed: int) -> float:
        """Mean seconds of `timed` steps from step `at_step`, after `warmup` untimed ones."""
        for i in range(warmup):
            self.step(at_step + i, batch)
        self.synchronize()
        started = time.perf_counter()
        for i in range(timed):
            self.step(at_step + warmup + i, batch)
        self.synchronize()
        return (time.perf_counter() - started) / timed

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` means a step did not fit in the device's memory (CUDA, or a failed CPU allocation)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def estimate_device(config: RunConfig) -> tuple[torch.device, str]:
    """(the device to time `config` on, a note): the run's `training.device`, or the CPU (said in the note)
    when the run asks for a CUDA device this machine lacks."""
    try:
        return resolve_device(config.training.device), ""
    except RuntimeError:
        return torch.device("cpu"), f"training.device {config.training.device!r} is not here: timed on the CPU"


def estimate_configuration(configuration: Configuration, timed_steps: int = 3, warmup_steps: int = 1,
                           host_memory: HostMemory | None = None) -> Estimate:
    """Time `configuration` on its device (see the module docstring)."""
    config = configuration.config
    processes = configuration.processes
    batch_size = config.training.batch_size // processes  # one process's slice (README "Several GPUs and nodes")
    steps, source = run_steps(config)
    if processes > 1:
        source += f"; per process: batch {batch_size} of {config.training.batch_size} over {processes} processes"
    estimate = Estimate(configuration.label, configuration.runs, batch_size, steps, source, processes=processes)
    shape = input_shape(config)
    if shape is None:
        estimate.problem = "skipped: a synthetic problem that reads no dataset (seconds on any CPU)"
        return estimate
    device, note = estimate_device(config)
    host_memory = host_memory or HostMemory()
    switch = discriminator_switch(config)
    # (first step, steps in the phase): with the discriminator switching on mid-run, both phases are timed
    phases = [(0, switch), (switch, steps - switch)] if steps is not None and 0 < switch < steps else [(0, steps or 1)]
    try:
        with stand_in_perceptual_weights(config) as stand_in:
            if stand_in:
                note = "; ".join(filter(None, [note, "no LPIPS weights here: timed with random ones"]))
            _measure(estimate, config, batch_size, device, shape, phases, timed_steps, warmup_steps, host_memory)
    except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        estimate.problem = f"does not fit at batch {batch_size} on {device_name(device)}"
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    notes = [source] + ([f"discriminator from step {switch}"] if len(phases) == 2 else []) + ([note] if note else [])
    estimate.steps_source = "; ".join(notes)
    return estimate


def _measure(estimate: Estimate, config: RunConfig, batch_size: int, device: torch.device, shape: tuple[int, ...],
             phases: list[tuple[int, int]], timed_steps: int, warmup_steps: int, host_memory: HostMemory) -> None:
    """Fill in `estimate`'s step time and peak memory at one process's `batch_size`, or, on the CPU, why that
    batch cannot fit."""
    if device.type == "cpu":
        needed = projected_host_bytes(config, batch_size, device, shape, phases[-1][0], host_memory)
        available = available_host_bytes()
        if needed > available:
            estimate.problem = (f"does not fit at batch {batch_size}: needs about {needed / GIB:.1f} GiB "
                                f"(projected from batches of 1 and 2), {available / GIB:.1f} GiB available")
            return
    estimate.step_s, estimate.peak_bytes = _time_phases(config, batch_size, device, shape, phases, timed_steps,
                                                        warmup_steps, host_memory)


@contextmanager
def stand_in_perceptual_weights(config: RunConfig):
    """Yields True, with random LPIPS weights of the right shapes in place for the block, when the run uses the
    perceptual loss and its weights are not on this machine: the cost of a step does not depend on their values."""
    params = config.model.params
    if not getattr(params, "perceptual_weight", 0) or _weights_present(params.perceptual_weights):
        yield False
        return
    previous = os.environ.get(perceptual.WEIGHTS_ENV)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random_lpips.pt"
        state = perceptual.LPIPS(load=False).state_dict()
        torch.save({k: v.abs() if k.startswith("heads.") else v for k, v in state.items()}, path)  # heads are ≥ 0
        os.environ[perceptual.WEIGHTS_ENV] = str(path)
        try:
            yield True
        finally:
            if previous is None:
                os.environ.pop(perceptual.WEIGHTS_ENV, None)
            else:
                os.environ[perceptual.WEIGHTS_ENV] = previous


def _weights_present(path: str | None) -> bool:
    try:
        perceptual.resolve_weights_path(path)
    except FileNotFoundError:
        return False
    return True


def _time_phases(config: RunConfig, batch_size: int, device: torch.device, shape: tuple[int, ...],
                 phases: list[tuple[int, int]], timed_steps: int, warmup_steps: int,
                 host_memory: HostMemory) -> tuple[float, int]:
    """(mean seconds per step over the run, weighting each phase by its steps; peak memory in bytes)."""
    total = sum(count for _, count in phases)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        host_memory.start()
    timer = StepTimer(config, device, total)
    batch = timer.batch(shape, batch_size)
    seconds = sum(timer.time_steps(batch, start, warmup_steps, timed_steps) * count for start, count in phases)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else host_memory.peak_growth()
    return seconds / total, peak


def projected_host_bytes(config: RunConfig, batch_size: int, device: torch.device, shape: tuple[int, ...],
                         at_step: int, host_memory: HostMemory) -> int:
    """Peak memory of step `at_step` at `batch_size`, extrapolated linearly from that step at batches of
    1 and 2 (model, optimiser state and the discriminator once on included)."""
    peaks = []
    for small in (1, 2):
        host_memory.start()
        timer = StepTimer(config, device, at_step + 1)
        timer.step(at_step, timer.batch(shape, small))
        peaks.append(host_memory.peak_growth())
        del timer
        gc.collect()
    per_item = max(0, peaks[1] - peaks[0])
    return peaks[0] + per_item * (batch_size - 1)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} (this machine has no GPU)" if not torch.cuda.is_available() else str(device)


def estimate_suite(suite, timed_steps: int = 3, warmup_steps: int = 1) -> list[Estimate]:
    """An `Estimate` for each configuration of `suite`."""
    host_memory = HostMemory()
    result = []
    for configuration in configurations(suite):
        logger.info("timing %s (%d run%s)", configuration.label, configuration.runs,
                    "s" * (configuration.runs != 1))
        result.append(estimate_configuration(configuration, timed_steps, warmup_steps, host_memory))
    return result


# -- the table ------------------------------------------------------------------------------------------------

def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def estimate_table(suite, estimates: list[Estimate], timed_steps: int) -> str:
    """The table `run-suite --estimate` prints, with the suite's total in device-hours."""
    device, _ = estimate_device(suite.runs[0].config)
    memory_method = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                     else HostMemory().method)
    header = ["configuration", "runs", "batch/process", "step s", "items/s", "peak GiB", "steps/run", "h/run", "note"]
    rows = []
    for e in estimates:
        rows.append([e.label, str(e.runs), str(e.batch_size), _number(e.step_s, 3), _number(e.images_per_s, 1),
                     _number(None if e.peak_bytes is None else e.peak_bytes / GIB, 2),
                     "—" if e.steps is None else f"{e.steps:,}", _number(e.hours_per_run, 2),
                     e.problem or e.steps_source])
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    known = [e for e in estimates if e.hours_per_run is not None]
    total = sum(e.device_hours_per_run * e.runs for e in known)
    missing = sum(e.runs for e in estimates) - sum(e.runs for e in known)
    lines = [f"estimate of suite {suite.name}, profile {suite.profile or '(none)'} on {device_name(device)}: "
             f"{timed_steps} timed step(s) per configuration after warm-up; peak memory: {memory_method}",
             line(header), line(["-" * w for w in widths]), *(line(row) for row in rows),
             f"total: {total:,.1f} device-hours for {sum(e.runs for e in known)} run(s)"
             + (f"; {missing} run(s) not estimated (see note)" if missing else "")]
    return "\n".join(lines)

