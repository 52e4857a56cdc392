"""Gumbel-softmax quantization (paper §5.1 baseline, after Baevski et al. and karpathy/deep-vector-quantization).

Logits over the K codes come from a linear head on each token (a 1×1 convolution on spatial latents); the
decoder input is a (hard straight-through or soft) Gumbel-softmax mixture of codes; the temperature is
annealed 1.0 → 1/16 and a KL-to-uniform term is ramped 0 → 5e-4, both over training progress in [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import CodeSample, SamplingEstimator, at_least_float32, float32_arithmetic
from .registry import register

SCHEDULES = ("cosine", "linear", "constant")


def anneal(start: float, end: float, progress: float, schedule: str) -> float:
    """Value of a schedule from `start` (progress 0) to `end` (progress 1)."""
    progress = min(max(float(progress), 0.0), 1.0)
    if schedule == "cosine":
        return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "constant":
        return end
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


@register("gumbel")
class GumbelSoftmax(SamplingEstimator):
    """Gumbel-softmax over codes, temperature annealed, KL-to-uniform prior (§5.1 baseline)."""

    paper_section = "§5.1 (baseline)"

    def __init__(
        self,
        hard: bool = True,
        temperature_start: float = 1.0,
        temperature_end: float = 1.0 / 16,
        temperature_schedule: str = "cosine",
        kl_weight: float = 5e-4,
        kl_schedule: str = "cosine",
    ):
        for key, schedule in (("temperature_schedule", temperature_schedule), ("kl_schedule", kl_schedule)):
            if schedule not in SCHEDULES:
                raise ValueError(f"gumbel: unknown {key} {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not (temperature_start > 0 and temperature_end > 0):
            raise ValueError("gumbel: temperatures must be positive")
        self.hard = bool(hard)
        self.temperature_start = float(temperature_start)
        self.temperature_end = float(temperature_end)
        self.temperature_schedule = temperature_schedule
        self.kl_weight = float(kl_weight)
        self.kl_schedule = kl_schedule

    def temperature(self, progress: float) -> float:
        return anneal(self.temperature_start, self.temperature_end, progress, self.temperature_schedule)

    def kl_weight_at(self, progress: float) -> float:
        """The KL weight ramps from 0 to `kl_weight` (the same schedule shapes, reversed)."""
        return anneal(0.0, self.kl_weight, progress, self.kl_schedule)

    def sample(self, logits, codebook, progress, training):
        """Sample codes for logits (N, K) from the codebook (K, D); deterministic argmax when not training."""
        with float32_arithmetic(logits.device.type):
            logits = at_least_float32(logits)
            codebook = codebook.to(logits.dtype)
            tau = self.temperature(progress)
            if training:
                soft = F.gumbel_softmax(logits, tau=tau, hard=self.hard, dim=-1)
            else:
                soft = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
            indices = soft.argmax(-1)
            decoder_input = soft @ codebook
            probs = logits.softmax(-1)
            kl_to_uniform = (probs * torch.log(probs * logits.shape[-1] + 1e-10)).sum(-1).mean()
            aux_loss = self.kl_weight_at(progress) * kl_to_uniform
        return CodeSample(decoder_input, indices, aux_loss, tau)
