"""Finite scalar quantization, FSQ (Mentzer et al., ICLR 2024): a codebook-free baseline; after the paper.

Each token is projected to L = len(levels) dimensions, each bounded to its level range and rounded with a
straight-through gradient: dimension i with ℓ_i levels becomes h_i = tanh(x_i + s_i)·a_i − o_i with
a_i = (ℓ_i − 1)/2·(1 − 1e-3), o_i = 1/2 for even ℓ_i (0 for odd) and s_i = atanh(o_i/a_i), rounded to the
nearest integer (ℓ_i values in [−⌊ℓ_i/2⌋, ⌈ℓ_i/2⌉ − 1]) and divided by ⌊ℓ_i/2⌋ before the projection back.
The implied codebook is the grid of ∏ℓ_i points; a token's index is its mixed-radix digits. Nothing is
learned in the quantizer besides the two projections: there is no codebook loss or commitment term.
The statistics (usage, perplexity of the implied codebook; quantization error between the scaled bounded and
rounded values) are those of `QuantizerOutput`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

import estimators
from estimators.base import at_least_float32, decoded_once

from .quantizer import QuantizerOutput, to_tokens

#: Shrinks the bound below (ℓ − 1)/2 so that tanh never reaches the edge of the last level.
BOUND_MARGIN = 1e-3


class FiniteScalarQuantizer(nn.Module):
    """FSQ: bound, round (straight-through) and rescale L projected dimensions; ∏ levels implied codes."""

    def __init__(self, dim: int, levels: list[int]):
        super().__init__()
        if not levels or any(int(level) < 2 for level in levels):
            raise ValueError(f"fsq levels must be a non-empty list of integers >= 2, got {levels}")
        self.levels = [int(level) for level in levels]
        self.num_codes = math.prod(self.levels)
        self.estimator = estimators.get("ste")  # the rounding's gradient is the straight-through one
        self.project_in = nn.Linear(dim, len(self.levels))
        self.project_out = nn.Linear(len(self.levels), dim)
        level_tensor = torch.tensor(self.levels, dtype=torch.float32)
        half = (level_tensor - 1.0) / 2.0 * (1.0 - BOUND_MARGIN)
        offset = torch.where(level_tensor % 2 == 0, 0.5, 0.0)
        self.register_buffer("half_range", half, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half), persistent=False)
        self.register_buffer("half_width", torch.floor(level_tensor / 2.0), persistent=False)
        radix = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.long), 0)
        self.register_buffer("radix", radix, persistent=False)
        self.progress = 0.0

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        """Each dimension squashed into its level range (before rounding)."""
        return torch.tanh(x + self.shift) * self.half_range - self.offset

    def indices_of(self, rounded: torch.Tensor) -> torch.Tensor:
        """Mixed-radix index of rounded integer values (N, L) in [−⌊ℓ/2⌋, ⌈ℓ/2⌉ − 1]."""
        digits = (rounded + self.half_width).long()
        return (digits * self.radix).sum(-1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        tokens, restore = to_tokens(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            bounded = self.bound(self.project_in(at_least_float32(tokens)))
            rounded = torch.round(bounded)
            quantized = bounded + (rounded - bounded).detach()
            decoder_input = restore(self.project_out(quantized / self.half_width)).to(z.dtype)
        indices = self.indices_of(rounded.detach())
        layout_indices = restore(indices[:, None])[:, 0] if z.ndim > 2 else indices
        scaled = bounded / self.half_width
        return QuantizerOutput(decoder_input, layout_indices, scaled.new_zeros(()), scaled,
                               (rounded / self.half_width).detach(), self.num_codes, decoded_once(decoder_input))

    @torch.no_grad()
    def lookup_indices(self, z: torch.Tensor) -> torch.Tensor:
        tokens, _ = to_tokens(z)
        return self.indices_of(torch.round(self.bound(self.project_in(at_least_float32(tokens)))))
