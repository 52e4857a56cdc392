"""One run: a `Trainer` builds it, resumes it from its checkpoint, trains, checkpoints and finishes it.

A run is deterministic on the CPU given its config: batches are a function of (seed, step) and the
checkpoint (harness/checkpoint.py) holds the model, optimisers, schedulers, every RNG state and the history,
so a run resumed from its checkpoint ends with the same metrics as an uninterrupted one. The learning-rate
schedule is the paper's: linear warmup, then cosine decay or constant (paper Table 8).

A run with `training.world_size` > 1 (or in a SLURM job of several tasks) trains data-parallel (README
"Several GPUs and nodes"; harness/distributed.py): each rank takes its slice of the step's batch, and rank 0
alone writes the history and the checkpoints.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler, SequentialSampler

import models
from models.base import StepContext
from models.collectives import logs_vector, mean_logs_over_ranks

from . import data as data_module
from . import distributed, store
from .checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from .config import RunConfig
from .data.loading import default_num_workers, device_batches, make_loader, to_device
from .diagnostics import gradient_diagnostics, supports_diagnostics
from .run_logging import RunLog
from .status import RunStatus

logger = logging.getLogger(__name__)

#: How many of the skipped unreadable files a run's record names (it counts them all).
SKIPPED_FILES_NAMED = 20


@dataclass
class RunResult:
    status: RunStatus
    step: int
    metrics: dict
    notes: dict = field(default_factory=dict)
    diverged_at: int | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """The torch device for `training.device`; a CUDA device this machine does not have is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise RuntimeError(
            f"training.device is {name!r} but this machine has no CUDA device (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); set training.device to 'auto' (the GPU when there is one) "
            "or 'cpu', e.g. --set training.device=auto, or run the suite on a GPU machine")
    if device.index is not None and device.index >= count:
        raise RuntimeError(f"training.device is {name!r} but this machine has {count} CUDA device(s), "
                           f"cuda:0 to cuda:{count - 1}; set training.device to one of them or 'cuda'")
    return device


class StepBatchSampler(Sampler):
    """Indices of the batch at each step, a function of (seed, step) alone, so any step can resume exactly.

    Each batch is drawn uniformly without replacement; an epoch is len(dataset) / batch_size steps. Under data
    parallelism rank `rank` of `world` takes its slice of each batch (distributed.rank_slice), so the data of a
    run do not depend on how many processes run it.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1):
        self.size, self.batch_size, self.seed, self.start, self.stop = size, batch_size, seed, start, stop
        self.rank, self.world = rank, world

    def __iter__(self):
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            batch = rng.choice(self.size, size=min(self.batch_size, self.size), replace=False).tolist()
            yield batch if self.world == 1 else batch[distributed.rank_slice(len(batch), self.rank, self.world)]

    def __len__(self):
        return self.stop - self.start


def total_steps(training, train_size: int) -> int:
    if training.steps is not None:
        return int(training.steps)
    return max(1, math.ceil(float(training.epochs) * train_size / training.batch_size))


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` (or constant): the paper's schedule (Table 8)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_speed_settings(model, device: torch.device, training) -> dict:
    """The speed settings of a run (README "Training on GPUs"), applied to `model`; what was applied.

    On CUDA: TF32 for float32 matmuls and convolutions, cuDNN autotuning (cudnn.benchmark) and, for the
    convolutional families, the channels-last memory format. With `training.compile`: torch.compile of the
    family's networks, on any device. On the CPU without compile nothing changes, so CPU runs stay
    bit-identical to the reference results. The CUDA switches are process-wide and leave CPU arithmetic alone.
    """
    applied: dict = {}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        applied.update(gpu=torch.cuda.get_device_name(device), tf32=True, cudnn_benchmark=True,
                       channels_last=bool(model.channels_last))
        if model.channels_last:
            model.to(memory_format=torch.channels_last)
    if training.compile:
        applied["compiled"] = model.compile_modules()
    return applied


#: Without `training.usage_window`, the training metrics average the last this fraction of the run.
END_OF_TRAINING_FRACTION = 0.1


def training_metric_window(steps: int, window: int | None) -> int:
    """The first step of the window the training metrics (train_*) average: the last `window` steps of a run
    of `steps` steps, or its last END_OF_TRAINING_FRACTION when `window` is None; the last step always counts.
    End-of-training values, as the paper's tables report the trained model (paper §5)."""
    length = window if window is not None else math.ceil(END_OF_TRAINING_FRACTION * steps)
    return max(0, steps - max(1, length))


def _mean_last(history: list[dict], key: str, first_step: int) -> float | None:
    values = [row[key] for row in history if row.get("kind") == "train" and key in row and row["step"] >= first_step]
    return float(np.mean(values)) if values else None


class FiniteWatch:
    """The first step whose training logs were not all finite, kept on the device between reads.

    `observe` costs a few device ops per step and never waits for the GPU; `read` transfers the logs of one
    step together with the watch's value in one copy (the trainer reads at its log, evaluation, checkpoint
    and stop steps). Divergence is thus noticed at the next read, but `diverged_at` is still the exact first
    non-finite step (the steps in between ran on non-finite weights and are discarded with the run).
    """

    NONE = -1

    def __init__(self, device: torch.device):
        self.first = torch.full((), self.NONE, dtype=torch.float64, device=device)

    def observe(self, step: int, logs: dict) -> None:
        values = logs_vector(logs, self.first.device)
        bad = ~torch.isfinite(values).all()
        self.first = torch.where(bad & (self.first == self.NONE), float(step), self.first)

    def read(self, logs: dict | None = None) -> tuple[int | None, dict]:
        """(first non-finite step or None, `logs` as plain numbers), in one device-to-host copy."""
        logs = logs or {}
        numbers = torch.cat([self.first.reshape(1), logs_vector(logs, self.first.device)]).tolist()
        first = int(numbers[0])
        return (None if first == self.NONE else first), dict(zip(logs, numbers[1:]))


def _history_row(kind: str, step: int, values: dict) -> dict:
    """A history row of plain Python values (numpy or torch scalars become numbers), so the checkpoint
    holding the history loads with weights_only=True."""
    return {"kind": kind, "step": step, **{k: v.item() if hasattr(v, "item") else v for k, v in values.items()}}


class Trainer:
    """One run in stages: `build` (device first, then data, model, optimisers), `resume` (from the run's
    checkpoint), `train` (one `step` per batch, periodic `evaluate` and `diagnostics`, `checkpoint` every
    `training.checkpoint_every` steps and every `training.checkpoint_every_min` minutes) and `finish`
    (final evaluation, diagnostics, fidelity metrics).

    `should_stop()` is polled at every step boundary and between the stages of `finish` (the SLURM executor
    sets it on preemption or time-out): the run checkpoints and ends as `preempted`, to be resumed later. The
    checkpoint of the last step is written before `finish`, so a run stopped during its final evaluation
    resumes with that evaluation alone.
    """

    #: The clock of the wall-clock checkpoints, in seconds (a test may replace it).
    clock = staticmethod(time.monotonic)

    def __init__(self, config: RunConfig, directory: str | Path, progress: bool = True, label: str = "",
                 should_stop=None):
        self.started = time.time()
        self.config = config
        self.directory = Path(directory)
        self.checkpoint_path = self.directory / store.CHECKPOINT
        self.progress = progress
        self.label = label
        self.should_stop = should_stop or (lambda: False)
        self.training = config.training
        self.metrics_config = config.metrics
        self.seed = config.seed
        self.history: list[dict] = []
        self.start = 0
        self.saved_step: int | None = None
        self.saved_at = self.clock()
        self.elapsed_before = 0.0
        self.place = distributed.place()

    def run(self) -> RunResult:
        self.build()
        self.resume()
        try:
            return self.train() or self.finish()
        finally:
            self.run_log.close()

    # -- stages -------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Device, datasets, model, optimisers and schedulers. The device comes first: a CUDA device this
        machine lacks fails before any data is read."""
        self.device = distributed.rank_device(resolve_device(self.training.device), self.place.local_rank)
        seed_everything(self.seed)
        self.build_data()
        self.build_model()
        self.run_log = RunLog(self)  # TensorBoard / W&B (harness/run_logging.py)
        self.diagnose = (self.metrics_config.diagnostics and self.val_set is not None
                         and supports_diagnostics(self.model))
        if self.diagnose:
            size = min(self.metrics_config.diagnostics_batch, len(self.val_set))
            self.fixed_batch = to_device(torch.stack([self.val_set[i] for i in range(size)]), self.device,
                                         self.memory_format)

    def build_model(self) -> None:
        """The model on `self.device` with the device's speed settings (`apply_speed_settings`), its optimisers
        and their learning-rate schedules over `self.steps` steps."""
        self.model = models.build_model(self.config.model, self.config.estimator.build()).to(self.device)
        self.speed = apply_speed_settings(self.model, self.device, self.training)
        self.memory_format = torch.channels_last if self.speed.get("channels_last") else torch.contiguous_format
        self.optimizers = self.model.configure_optimizers(self.training)
        schedule = partial(lr_factor, warmup=self.training.warmup_steps, total=self.steps,
                           schedule=self.training.schedule, min_ratio=self.training.min_lr_ratio)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
                           for name, optimizer in self.optimizers.items()}

    def build_data(self) -> None:
        """The training and validation sets and the run's length. A family that reads no dataset (the
        synthetic problems own their points: `config.data` is None) trains `training.steps` steps on batch
        None and evaluates on no batches. `skipped_files`: the unreadable files a dataset with
        `data.skip_corrupt` left out or replaced (README "Data"), counted in the run's record."""
        self.skipped_files: set[str] = set()
        self.validation_loader = None
        if self.config.data is None:
            self.train_set = self.val_set = None
            self.num_workers = 0
            self.steps = int(self.training.steps)
            return
        self.train_set = data_module.build_dataset(self.config.data, "train", self.seed)
        self.val_set = data_module.build_dataset(self.config.data, "val", self.seed)
        self.num_workers = (default_num_workers(self.train_set) if self.training.num_workers is None
                            else self.training.num_workers)
        for dataset in (self.train_set, self.val_set):
            self.skipped_files.update(getattr(dataset, "skipped_files", ()))
        self.steps = total_steps(self.training, len(self.train_set))

    def loader(self, dataset, **order):
        """A DataLoader of CPU batches of `dataset` (harness/data/loading.py): stacked in `num_workers`
        persistent worker processes (in this one with 0), pinned for a CUDA device."""
        return make_loader(dataset, self.num_workers, self.device.type == "cuda", self.loader_generator(), **order)

    def on_device(self, loader):
        """The batches of `loader` on the run's device, counting the files skipped to make them."""
        return device_batches(loader, self.device, self.skipped_files, self.memory_format)

    def train_batches(self):
        """The batch of each step from the resumed one: a function of (seed, step) (`StepBatchSampler`)."""
        if self.train_set is None:
            return itertools.repeat(None, self.steps - self.start)
        sampler = StepBatchSampler(len(self.train_set), self.training.batch_size, self.seed, self.start, self.steps,
                                   self.place.rank, self.place.world)
        return self.on_device(self.loader(self.train_set, batch_sampler=sampler))

    def validation_batches(self):
        """The validation batches of one evaluation (at most `training.eval_batches`); the loader, and its
        workers, serve every evaluation of the run. Under data parallelism this rank's slices of them (the
        model's `evaluate` gathers the metrics of the whole batches)."""
        if self.val_set is None:
            return iter(())
        if self.validation_loader is None:
            if self.place.world > 1:
                batches = distributed.RankSlices(BatchSampler(SequentialSampler(self.val_set),
                                                              self.training.batch_size, drop_last=False),
                                                 self.place.rank, self.place.world)
                self.validation_loader = self.loader(self.val_set, batch_sampler=batches)
            else:
                self.validation_loader = self.loader(self.val_set, batch_size=self.training.batch_size)
        return self.on_device(itertools.islice(self.validation_loader, self.training.eval_batches))

    def fidelity_batches(self, dataset, batch_size: int):
        """`dataset`'s items in order, by `batch_size`, on the device (the fidelity metrics' input)."""
        return self.on_device(self.loader(dataset, batch_size=batch_size))

    def resume(self) -> None:
        """Restore the run from its checkpoint, if it has one (harness/checkpoint.py: loaded to the CPU,
        refused if it holds anything but tensors and plain containers)."""
        if not self.checkpoint_path.exists():
            return
        state = load_checkpoint(self.checkpoint_path)
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        restore_rng_state(state["random_state"])
        self.history = state["history"]
        self.skipped_files.update(state.get("skipped_files", ()))
        self.start = self.saved_step = state["step"]
        self.elapsed_before = state["elapsed"]
        logger.info("%s: resumed at step %d of %d", self.checkpoint_path, self.start, self.steps)

    def train(self) -> RunResult | None:
        """Steps from the resumed step to the last; None when they all ran (then `finish`), else the result
        that ends the run early (`diverged`, `preempted`)."""
        loader = self.train_batches()
        bar = _progress_bar(self.progress and self.training.progress_bar, self.steps, self.start, self.label)
        self.saved_at = self.clock()
        self.model.train()
        self.watch = FiniteWatch(self.device)
        try:
            for step, batch in enumerate(loader, start=self.start):
                try:
                    logs = self.step(step, batch)
                except Exception:  # e.g. sampling from non-finite logits after an unnoticed divergence
                    if self.watch.read()[0] is not None:
                        return self.diverged()
                    raise
                self.watch.observe(step, logs)
                logged = step % self.training.log_every == 0 or step == self.steps - 1
                checkpointing = (step + 1) % self.training.checkpoint_every == 0 or self.checkpoint_due()
                if logged or checkpointing or self.evaluation_due(step):
                    diverged_at, logs = self.watch.read(logs if logged else None)
                    if diverged_at is not None:
                        return self.diverged()
                if logged:
                    self.history.append(_history_row("train", step, logs))
                    self.run_log.row(self.history[-1])
                    bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}",
                                    usage=f"{logs.get('usage_batch', 0):.0%}")
                self.evaluate_periodically(step)
                if checkpointing:
                    self.checkpoint(step + 1)
                bar.update(1)
                if self.stop_requested():
                    return self.diverged() if self.watch.read()[0] is not None else self.preempt(step + 1)
        finally:
            bar.close()
        if self.saved_step != self.steps:
            self.checkpoint(self.steps)  # before the final evaluation: a stop during it loses no training
        return None

    def step(self, step: int, batch: torch.Tensor) -> dict:
        """One optimisation step of the model and the schedulers; the model's logs (0-dim tensors on the
        device, or numbers: `train` reads them at log steps only). Under data parallelism the logs are averaged
        over the ranks every step (one small collective beside the gradients'), so every rank's FiniteWatch
        sees the same values and all ranks end a diverged run at the same step."""
        self.model.set_progress(step / self.steps)
        if self.place.world > 1:
            self.seed_rank_step(step)
        context = StepContext(step=step, total_steps=self.steps, grad_clip=self.training.grad_clip,
                              autocast=self.autocast, accumulate=self.training.accumulate)
        logs = self.model.training_step(batch, context, self.optimizers)
        with warnings.catch_warnings():
            # A GAN's discriminator optimiser does not step before `disc_start`, while its schedule follows the
            # global step: PyTorch's warning about stepping a schedule before its optimiser is expected there.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before",
                                    category=UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.step()
        return mean_logs_over_ranks(logs)

    def seed_rank_step(self, step: int) -> None:
        """Under data parallelism, the random numbers of a step (Gumbel noise, dropout) are a function of
        (seed, step, rank): independent across the ranks' slices, and the same after a resume whichever
        rank's generator state the checkpoint holds."""
        torch.manual_seed(int(np.random.SeedSequence([self.seed, step, self.place.rank]).generate_state(1)[0]))

    def stop_requested(self) -> bool:
        """`should_stop`, agreed by every rank (any rank's request stops all at the same step boundary)."""
        return distributed.any_rank(bool(self.should_stop()))

    def diverged(self) -> RunResult:
        """The run ends as `diverged` at the first step whose logs were not finite (see `FiniteWatch`)."""
        step = self.watch.read()[0]
        return RunResult(RunStatus.DIVERGED, step, {"steps": step}, diverged_at=step)

    def evaluation_due(self, step: int) -> bool:
        """Whether `evaluate_periodically` evaluates or diagnoses at `step`."""
        training = self.training
        return bool((training.eval_every and step and step % training.eval_every == 0)
                    or (self.diagnose and training.diagnostics_every and step % training.diagnostics_every == 0))

    def evaluate_periodically(self, step: int) -> None:
        training = self.training
        if training.eval_every and step and step % training.eval_every == 0:
            self.evaluate(step)
            if self.diagnose and not training.diagnostics_every:
                self.diagnostics(step)
        if self.diagnose and training.diagnostics_every and step % training.diagnostics_every == 0:
            self.diagnostics(step)

    def evaluate(self, step: int) -> dict:
        """The model's validation metrics (at most `training.eval_batches` batches), logged in the history."""
        self.model.eval()
        with self.autocast():
            result = self.model.evaluate(self.validation_batches())
        self.model.train()
        self.history.append(_history_row("eval", step, result))
        self.run_log.row(self.history[-1])
        self.run_log.evaluated(step)
        return result

    def diagnostics(self, step: int) -> dict:
        """Gradient diagnostics on the fixed validation batch (README "Metrics"), logged in the history. They
        would be the same on every rank: rank 0 alone computes them."""
        if not self.place.main:
            return {}
        result = gradient_diagnostics(self.model, self.fixed_batch)
        self.history.append(_history_row("diagnostics", step, result))
        self.run_log.row(self.history[-1])
        return result

    def checkpoint_due(self) -> bool:
        """Whether `training.checkpoint_every_min` minutes have passed since the last checkpoint."""
        minutes = self.training.checkpoint_every_min
        return minutes is not None and self.clock() - self.saved_at >= 60.0 * minutes

    def checkpoint(self, step: int) -> None:
        """Save everything `resume` restores, as of `step` steps done, and the history so far (rank 0 writes;
        every rank resumes from its file)."""
        if not self.place.main:
            self.saved_step, self.saved_at = step, self.clock()
            return
        save_checkpoint(self.checkpoint_path, {
            "model": self.model.state_dict(), "step": step, "history": self.history,
            "random_state": rng_state(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "schedulers": {name: scheduler.state_dict() for name, scheduler in self.schedulers.items()},
            "elapsed": self.elapsed(), "skipped_files": sorted(self.skipped_files),
        })
        store.write_history(self.directory / store.HISTORY, self.history)
        self.saved_step, self.saved_at = step, self.clock()

    def preempt(self, step: int) -> RunResult:
        """End the run as `preempted` at `step`, checkpointed there."""
        if self.saved_step != step:
            self.checkpoint(step)
        logger.info("%s: preempted at step %d of %d", self.checkpoint_path, step, self.steps)
        return RunResult(RunStatus.PREEMPTED, step, {"steps": step})

    def finish(self) -> RunResult:
        """Final evaluation, diagnostics, end-of-training averages (`training_metric_window`, the steps they
        cover in `notes.train_window`) and fidelity metrics, then the history and the
        model's artifacts. `should_stop` is polled before each stage: the run then ends as `preempted` (its
        checkpoint is the last step's, so the resumed run redoes these stages alone)."""
        metrics: dict = {}
        notes: dict = {"speed": self.speed} if self.speed else {}
        stages = [lambda: metrics.update(self.evaluate(self.steps))]
        if self.diagnose:
            stages.append(lambda: metrics.update(self.diagnostics(self.steps)))
        if self.metrics_config.fidelity:
            stages.append(lambda: self.fidelity(metrics, notes))
        for stage in stages:
            if self.stop_requested():
                return self.preempt(self.steps)
            stage()
        first_step = training_metric_window(self.steps, self.training.usage_window)
        for key in ("rec_loss", "usage_batch", "quant_error", "loss"):
            value = _mean_last(self.history, key, first_step)
            if value is not None:
                metrics[f"train_{key}"] = value
                notes["train_window"] = [first_step, self.steps - 1]
        metrics["steps"] = self.steps
        metrics["wall_time_s"] = self.elapsed()
        if self.skipped_files:
            notes["skipped_corrupt"] = {"count": len(self.skipped_files),
                                        "files": sorted(self.skipped_files)[:SKIPPED_FILES_NAMED]}
        if self.place.world > 1:
            notes["data_parallel"] = {"world_size": self.place.world, "accumulate": self.training.accumulate,
                                      "backend": distributed.backend_for(self.device.type)}
        if not self.place.main:
            return RunResult(RunStatus.FINISHED, self.steps, metrics, notes)
        if hasattr(self.model, "artifacts"):  # e.g. point snapshots of the synthetic problems (README "Figures")
            store.write_json(self.directory / store.ARTIFACTS, self.model.artifacts())
        store.write_history(self.directory / store.HISTORY, self.history)
        self.run_log.finished(metrics)
        return RunResult(RunStatus.FINISHED, self.steps, metrics, notes)

    def fidelity(self, metrics: dict, notes: dict) -> None:
        """r-FID / r-IS or r-FVD of the validation reconstructions (README "Metrics"); under data parallelism
        each rank reconstructs its shard of the samples and the statistics are gathered."""
        from .fidelity import Shard, fidelity_for_run

        shard = Shard(self.place.rank, self.place.world, distributed.gather if self.place.world > 1 else None)
        values, note = fidelity_for_run(self.model, self.val_set, self.metrics_config, self.training.batch_size,
                                        self.device, self.autocast, batches=self.fidelity_batches, shard=shard)
        metrics.update(values)
        notes["fidelity"] = note

    # -- helpers --------------------------------------------------------------------------------------------

    def autocast(self):
        if self.training.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def loader_generator(self) -> torch.Generator:
        """A DataLoader's own generator: starting to iterate a loader draws its workers' base seed from it,
        which would otherwise come from the global generator and shift a resumed run's random numbers (the
        Gumbel estimator's noise) by one draw."""
        return torch.Generator().manual_seed(self.seed)

    def elapsed(self) -> float:
        """Training wall time in seconds, over every attempt of the run."""
        return self.elapsed_before + time.time() - self.started


def train_run(config: RunConfig, directory: Path, progress: bool = True, label: str = "",
              should_stop=None) -> RunResult:
    """Train the run described by the validated `config` in `directory` (see `Trainer`); with
    `training.world_size` N > 1, outside a process group, in N new processes on this machine (rank 0's
    result)."""
    world = config.training.world_size
    if world > 1 and not distributed.initialized():
        device_type = distributed.device_type_of(config.training.device)
        return distributed.launch_local(world, device_type, _train_rank, (config, str(directory), label),
                                        should_stop)
    return Trainer(config, directory, progress=progress, label=label, should_stop=should_stop).run()


def _train_rank(config: RunConfig, directory: str, label: str, should_stop) -> RunResult:
    """One rank of a local data-parallel run (distributed.launch_local); no progress bar."""
    return Trainer(config, directory, progress=False, label=label, should_stop=should_stop).run()


def _progress_bar(enabled: bool, total: int, initial: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label or "train", disable=not enabled, leave=False,
                dynamic_ncols=True)
