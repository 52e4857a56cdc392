"""Typed sections of a run's configuration (README "Suite files" documents every key).

A run's resolved configuration is a plain dict with the sections below; these dataclasses give each key its
type and default, so harness.suite can validate a suite before anything runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainingConfig:
    """How one run trains (paper Tables 8-11 give the paper's values; presets fill them in)."""

    steps: int | None = None  # optimiser steps; if None, `epochs` × batches per epoch
    epochs: float | None = None
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast; quantizer and estimator arithmetic stay float32)
    num_workers: int = 0
    log_every: int = 10
    eval_every: int | None = None  # None: only at the end
    eval_batches: int | None = None  # cap on validation batches per evaluation; None: the whole set
    checkpoint_every: int = 100
    diagnostics_every: int | None = None  # gradient diagnostics interval; None: at eval time
    usage_window: int = 50  # training metrics are averaged over the last this-many logged steps
    progress_bar: bool = True


@dataclass
class MetricsConfig:
    """Optional metrics and where their offline weights live (README "Metrics")."""

    fidelity: bool = False  # r-FID / r-IS (images) or r-FVD (video) at the end of the run
    inception_weights: str | None = None  # or env ROTATION_HARNESS_INCEPTION_WEIGHTS
    i3d_weights: str | None = None  # or env ROTATION_HARNESS_I3D_WEIGHTS
    fidelity_samples: int | None = None  # cap on validation images for r-FID; None: the whole set
    diagnostics: bool = True  # gradient diagnostics (cosine to exact gradient, obtuse fraction, push/pull)
    diagnostics_batch: int = 16


SECTION_TYPES = {"training": TrainingConfig, "metrics": MetricsConfig}
CHOICES = {
    ("training", "schedule"): ("cosine", "constant"),
    ("training", "precision"): ("fp32", "bf16"),
}


def field_types(cls) -> dict[str, object]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def build(cls, values: dict):
    """Instantiate a section dataclass from a validated dict."""
    return cls(**values)
