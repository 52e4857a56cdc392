"""(e) One full training step of the VQ-VAE `cpu` preset with the rotation trick against the STE, and the
harness's overhead: harness.train.train_run against a bare loop of `training_step`.

Training step: models.build_model(ModelConfig of the vqvae cpu preset, estimator), optimisers from
models.base.TrainingDefaults, a batch of 64 images 3×32×32 in [-1, 1], models.base.StepContext (bf16
autocast on CUDA). Each estimator has its own model, built from the same seed.

Harness overhead: train_run(config, directory, progress=False, label=...) on a tiny resolved run config (a
one-run suite written to a temporary YAML file and resolved by harness.suite.load_suite, so the preset is
merged exactly as in a real suite) against a bare loop that does only what a training run cannot avoid:
build the training set and the model, then call `model.training_step` on the same batches (same
indices, collated with torch.stack). Both are timed at two lengths (STEPS_SHORT and STEPS_LONG): the
whole-run overhead includes the harness's fixed costs (validation set, final evaluation, checkpoint), the
per-step overhead is the difference of the two lengths (DataLoader, sampler, scheduler, logging).
"""
from __future__ import annotations

import pytest
import torch

import estimators
import models
from benchmarks._common import autocast, interleaved
from harness.config import ModelConfig, RunConfig
from harness import data as data_module
from harness import train as train_module
from harness.suite import load_suite
from models.base import StepContext, TrainingDefaults

BATCH = 64
STEPS_SHORT, STEPS_LONG = 4, 12


def build_vqvae(estimator: str, device):
    torch.manual_seed(0)
    family = models.get_family("vqvae")
    model_config = ModelConfig.from_section({"family": "vqvae", **family.presets["cpu"]["model"]})
    model = models.build_model(model_config, estimators.get(estimator)).to(device)
    return model, model.configure_optimizers(TrainingDefaults())


def test_training_step_rotation_vs_ste(benchmark, request, device):
    benchmark.group = "e. VQ-VAE cpu preset training step (batch 64, 32x32)"
    x = (torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    ctx = StepContext(step=0, total_steps=1000, autocast=lambda: autocast(device))

    def step_of(estimator):
        model, optimizers = build_vqvae(estimator, device)
        model.train()
        return lambda: model.training_step(x, ctx, optimizers)

    info = interleaved(benchmark, request, "rotation", step_of("rotation"), {"ste": step_of("ste")}, device)
    family = models.get_family("vqvae")
    info.update(section="e-step", batch=BATCH, preset=family.presets["cpu"]["model"])


TINY_SUITE = """\
name: bench_overhead
description: one tiny run, for the harness-overhead benchmark
seeds: [0]
base:
  model: {{family: vqvae, preset: cpu}}
  estimator: {{name: rotation}}
  data: {{name: natural_patches, size: 32}}
  training: {{steps: {steps}, batch_size: {batch}, log_every: 10, checkpoint_every: 100000, eval_batches: 1,
             progress_bar: false, num_workers: 0, device: {device}}}
  metrics: {{diagnostics: false}}
"""


def resolved_config(tmp_path, steps: int, device) -> RunConfig:
    path = tmp_path / f"bench_overhead_{steps}.yaml"
    path.write_text(TINY_SUITE.format(steps=steps, batch=BATCH, device=device.type))
    (run,) = load_suite(str(path)).runs
    return run.config


def bare_loop(config: RunConfig, steps: int):
    """The unavoidable part of a run: training set, model, optimisers, `steps` training steps."""
    seed = config.seed
    train_module.seed_everything(seed)
    training = config.training
    device = torch.device(training.device)
    dataset = data_module.build_dataset(config.data, "train", seed)
    model = models.build_model(config.model, config.estimator.build()).to(device)
    optimizers = model.configure_optimizers(training)
    sampler = train_module.StepBatchSampler(len(dataset), training.batch_size, seed, 0, steps)
    model.train()
    for step, indices in enumerate(sampler):
        batch = torch.stack([dataset[i] for i in indices]).to(device)
        model.training_step(batch, StepContext(step=step, total_steps=steps), optimizers)


def test_harness_overhead(benchmark, request, device, tmp_path):
    benchmark.group = "e. harness overhead (train_run vs bare loop)"
    if device.type != "cpu":
        pytest.skip("harness overhead is measured on the CPU only")
    configs = {steps: resolved_config(tmp_path, steps, device) for steps in (STEPS_SHORT, STEPS_LONG)}
    counter = {"n": 0}

    def harness_run(steps):
        def run():
            counter["n"] += 1
            directory = tmp_path / f"run_{steps}_{counter['n']}"
            directory.mkdir()
            result = train_module.train_run(configs[steps], directory, progress=False, label="bench")
            assert result.status == "finished", result

        return run

    variants = {
        f"bare loop {STEPS_LONG} steps": lambda: bare_loop(configs[STEPS_LONG], STEPS_LONG),
        f"train_run {STEPS_SHORT} steps": harness_run(STEPS_SHORT),
        f"bare loop {STEPS_SHORT} steps": lambda: bare_loop(configs[STEPS_SHORT], STEPS_SHORT),
    }
    info = interleaved(benchmark, request, f"train_run {STEPS_LONG} steps", harness_run(STEPS_LONG), variants,
                       device, cap=5, warmup=False)
    info.update(section="e-overhead", steps_short=STEPS_SHORT, steps_long=STEPS_LONG, batch=BATCH,
                config=configs[STEPS_LONG])
