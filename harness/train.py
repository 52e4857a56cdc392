"""One run: seed, build, train with a progress bar, evaluate, checkpoint, and return the run's metrics.

`train_run(config, run_dir)` is deterministic on the CPU given the config: batches are a function of
(seed, step) and the checkpoint holds the model, optimisers, schedulers, RNG state and history, so a run
resumed from its checkpoint ends with the same metrics as an uninterrupted one.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

import models
from models.base import StepContext

from . import data as data_module
from . import store
from .config import RunConfig
from .diagnostics import gradient_diagnostics, supports_diagnostics


class Diverged(RuntimeError):
    """A NaN or inf loss: the run ends with status `diverged` at `step`."""

    def __init__(self, step: int, logs: dict):
        super().__init__(f"non-finite loss at step {step}: {logs}")
        self.step = step


@dataclass
class RunResult:
    status: str
    step: int
    metrics: dict
    notes: dict = field(default_factory=dict)
    diverged_at: int | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"training.device is {name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


class StepBatchSampler(Sampler):
    """Indices of the batch at each step, a function of (seed, step) alone, so any step can resume exactly.

    Each batch is drawn uniformly without replacement; an epoch is len(dataset) / batch_size steps.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int, stop: int):
        self.size, self.batch_size, self.seed, self.start, self.stop = size, batch_size, seed, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            yield rng.choice(self.size, size=min(self.batch_size, self.size), replace=False).tolist()

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


def _collate(device, batch):
    return torch.stack(batch).to(device, non_blocking=True)


def _mean_last(history: list[dict], key: str, window: int) -> float | None:
    values = [row[key] for row in history if row.get("kind") == "train" and key in row]
    values = values[-window:]
    return float(np.mean(values)) if values else None


def train_run(config: RunConfig, directory: Path, progress: bool = True, label: str = "",
              should_stop=None) -> RunResult:
    """Train the run described by the validated `config`, writing checkpoint and history into `directory`.

    `should_stop()` is polled at every step boundary (the SLURM executor sets it on preemption or time-out):
    when it returns True the run checkpoints and returns with status `preempted`, to be resumed later.
    """
    started = time.time()
    training = config.training
    metrics_cfg = config.metrics
    seed = config.seed
    seed_everything(seed)
    device = resolve_device(training.device)
    train_set = data_module.build_dataset(config.data, "train", seed)
    val_set = data_module.build_dataset(config.data, "val", seed)
    steps = total_steps(training, len(train_set))

    estimator = config.estimator.build()
    model = models.build_model(config.model, estimator).to(device)
    optimizers = model.configure_optimizers(training)
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(opt, partial(
            lr_factor, warmup=training.warmup_steps, total=steps, schedule=training.schedule,
            min_ratio=training.min_lr_ratio))
        for name, opt in optimizers.items()
    }

    checkpoint_path = Path(directory) / store.CHECKPOINT
    history: list[dict] = []
    start = 0
    elapsed_before = 0.0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            schedulers[name].load_state_dict(state["schedulers"][name])
        torch.set_rng_state(state["rng"])
        history = state["history"]
        start = state["step"]
        elapsed_before = state.get("elapsed", 0.0)

    def save(step: int) -> None:
        store.save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "step": step, "history": history, "rng": torch.get_rng_state(),
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
            "elapsed": elapsed_before + time.time() - started,
        })
        store.write_history(Path(directory) / store.HISTORY, history)

    collate = partial(_collate, device)
    val_loader = DataLoader(val_set, batch_size=training.batch_size, shuffle=False, collate_fn=collate,
                            num_workers=training.num_workers)
    fixed_batch = torch.stack([val_set[i] for i in range(min(metrics_cfg.diagnostics_batch, len(val_set)))]).to(device)
    diagnose = metrics_cfg.diagnostics and supports_diagnostics(model)
    use_bf16 = training.precision == "bf16"

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    def evaluate(step: int) -> dict:
        model.eval()
        batches = (b for i, b in enumerate(val_loader) if training.eval_batches is None or i < training.eval_batches)
        with autocast():
            result = model.evaluate(batches)
        model.train()
        history.append({"kind": "eval", "step": step, **result})
        return result

    def diagnostics(step: int) -> dict:
        result = gradient_diagnostics(model, fixed_batch)
        history.append({"kind": "diagnostics", "step": step, **result})
        return result

    loader = DataLoader(train_set, batch_sampler=StepBatchSampler(len(train_set), training.batch_size, seed,
                                                                   start, steps),
                        collate_fn=collate, num_workers=training.num_workers)
    bar = _progress_bar(progress and training.progress_bar, steps, start, label)
    model.train()
    step = start
    for step, batch in enumerate(loader, start=start):
        model.set_progress(step / steps)
        ctx = StepContext(step=step, total_steps=steps, grad_clip=training.grad_clip, autocast=autocast)
        logs = model.training_step(batch, ctx, optimizers)
        for scheduler in schedulers.values():
            scheduler.step()
        if not all(math.isfinite(v) for v in logs.values()):
            bar.close()
            return RunResult("diverged", step, {"steps": step}, diverged_at=step)
        if step % training.log_every == 0 or step == steps - 1:
            history.append({"kind": "train", "step": step, **logs})
            bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}", usage=f"{logs.get('usage_batch', 0):.0%}")
        if training.eval_every and step and step % training.eval_every == 0:
            evaluate(step)
            if diagnose and not training.diagnostics_every:
                diagnostics(step)
        if diagnose and training.diagnostics_every and step % training.diagnostics_every == 0:
            diagnostics(step)
        if (step + 1) % training.checkpoint_every == 0 and step + 1 < steps:
            save(step + 1)
        bar.update(1)
        if should_stop is not None and step + 1 < steps and should_stop():
            save(step + 1)
            bar.close()
            return RunResult("preempted", step + 1, {"steps": step + 1})
    bar.close()

    final = evaluate(steps)
    metrics: dict = dict(final)
    if diagnose:
        metrics.update(diagnostics(steps))
    for key in ("rec_loss", "usage_batch", "quant_error", "loss"):
        value = _mean_last(history, key, training.usage_window)
        if value is not None:
            metrics[f"train_{key}"] = value
    notes = {}
    if metrics_cfg.fidelity:
        from .fidelity import fidelity_for_run

        values, note = fidelity_for_run(model, val_set, metrics_cfg, training.batch_size, device, autocast)
        metrics.update(values)
        notes["fidelity"] = note
    metrics["steps"] = steps
    metrics["wall_time_s"] = elapsed_before + time.time() - started
    if hasattr(model, "artifacts"):  # e.g. point snapshots of the synthetic problems (README "Figures")
        store.write_json(Path(directory) / store.ARTIFACTS, model.artifacts())
    save(steps)
    return RunResult("finished", steps, metrics, notes)


def _progress_bar(enabled: bool, total: int, initial: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label or "train", disable=not enabled, leave=False,
                dynamic_ncols=True)
