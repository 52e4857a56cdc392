"""Lookup-free quantization, LFQ (Yu et al., ICLR 2024, MAGVIT-v2): a codebook-free baseline; after the paper.

Each token is projected to b = log2(K) dimensions and quantized to q = sign(x) ∈ {−1, 1}^b (0 → +1) with a
straight-through gradient; the implied codebook is {−1, 1}^b and a token's index is Σ_i [q_i > 0]·2^i. The
auxiliary loss is β‖x − sg(q)‖² (commitment, the quantizer's `beta`) plus `entropy_weight` times the entropy
term of MAGVIT-v2: the mean per-token entropy of p(c | x) minus the entropy of its batch mean, with
p(c | x) = softmax_c(−‖x − c‖²) over the whole implied codebook (∝ exp(2xᵀc)), which pushes each token to a
confident code and the batch to use many codes. Temperature 1 and the full (not factorised) codebook are our
reading; K is therefore limited to 2^16.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import estimators
from estimators.base import at_least_float32, decoded_once

from .quantizer import QuantizerOutput, to_tokens

#: The largest implied codebook whose entropy term is computed over every code.
MAX_CODES = 1 << 16


def lfq_problems(num_codes: int) -> list[str]:
    """Why `num_codes` cannot be an LFQ codebook size ([] if it can)."""
    if num_codes < 2 or num_codes & (num_codes - 1):
        return [f"lfq needs num_codes to be a power of 2 (2^bits implied codes), got {num_codes}"]
    if num_codes > MAX_CODES:
        return [f"lfq's entropy term covers every implied code: num_codes must be at most {MAX_CODES}, "
                f"got {num_codes}"]
    return []


class LookupFreeQuantizer(nn.Module):
    """LFQ: sign of b projected dimensions (straight-through), commitment and entropy terms; 2^b implied codes."""

    def __init__(self, dim: int, num_codes: int, beta: float = 0.25, entropy_weight: float = 0.1):
        super().__init__()
        problems = lfq_problems(num_codes)
        if problems:
            raise ValueError(problems[0])
        self.num_codes = int(num_codes)
        self.bits = int(math.log2(num_codes))
        self.beta = float(beta)
        self.entropy_weight = float(entropy_weight)
        self.estimator = estimators.get("ste")  # the sign's gradient is the straight-through one
        self.project_in = nn.Linear(dim, self.bits)
        self.project_out = nn.Linear(self.bits, dim)
        self.register_buffer("powers", 2 ** torch.arange(self.bits), persistent=False)
        codes = (torch.arange(self.num_codes)[:, None] // self.powers) % 2
        self.register_buffer("implied_codebook", codes.float() * 2.0 - 1.0, persistent=False)
        self.progress = 0.0

    def entropy_term(self, x: torch.Tensor) -> torch.Tensor:
        """Mean per-token entropy of p(c | x) minus the entropy of the batch's mean p (MAGVIT-v2)."""
        log_p = F.log_softmax(2.0 * x @ self.implied_codebook.t(), dim=-1)
        p = log_p.exp()
        per_token = -(p * log_p).sum(-1).mean()
        mean_p = p.mean(0)
        batch = -torch.special.xlogy(mean_p, mean_p).sum()
        return per_token - batch

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        tokens, restore = to_tokens(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = self.project_in(at_least_float32(tokens))
            q = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
            decoder_input = restore(self.project_out(x + (q - x).detach())).to(z.dtype)
            aux = self.beta * F.mse_loss(x, q)
            if self.entropy_weight:
                aux = aux + self.entropy_weight * self.entropy_term(x)
        indices = ((q > 0).long() * self.powers).sum(-1)
        layout_indices = restore(indices[:, None])[:, 0] if z.ndim > 2 else indices
        return QuantizerOutput(decoder_input, layout_indices, aux, x, q.detach(), self.num_codes,
                               decoded_once(decoder_input))

    @torch.no_grad()
    def lookup_indices(self, z: torch.Tensor) -> torch.Tensor:
        tokens, _ = to_tokens(z)
        return ((self.project_in(at_least_float32(tokens)) > 0).long() * self.powers).sum(-1)
