"""DiVeQ and its space-filling variant SF-DiVeQ (Vali, Bäckström & Solin, ICLR 2026); after the paper.

DiVeQ: decoder input e + ‖q − e‖·sg(d), d = (q − e + ε)/‖q − e + ε‖ with ε ~ N(0, σ²I) drawn per token in
training (σ = `sigma`; 0 gives the deterministic variant, and evaluation never draws noise). With ε = 0 the
forward value is q (snapped to q exactly), e receives (I − ddᵀ)g and the codebook receives ddᵀg; with ε ≠ 0
the same formulas hold with the noisy direction d and the value is e + ‖q − e‖·d. The codebook learns
through this path alone (no codebook loss, no commitment term, no EMA); the method relies on replacing dead
codes (the quantizer's `dead_code_window`). Degenerate point: at q = e (and ε = 0) d is taken as 0, so e
receives g and the codebook nothing. σ's default, 1e-3, is this harness's choice.

SF-DiVeQ (space-filling): in training, one weight λ_k ~ U(0, 1) per pair of consecutive codewords is drawn at
each step, the points p_k = (1 − λ_k)c_k + λ_k c_{k+1} (k = 0..K−2) are searched for each token's nearest
(euclidean) point p_j, and DiVeQ is applied with q = p_j: the codebook's share ddᵀg is split between c_j
(weight 1 − λ_j) and c_{j+1} (weight λ_j). Our reading of the reported code index: the codeword with the
larger weight (c_j if λ_j < 1/2, else c_{j+1}). In evaluation each token takes its nearest codeword (the
interpolation is a training device), with value q.
"""
from __future__ import annotations

import torch

from .base import (EPS, CodebookTransportEstimator, Estimator, Quantized, at_least_float32, decoded_once,
                   float32_arithmetic)
from .registry import register


def check_sigma(name: str, sigma: float) -> float:
    if not sigma >= 0:
        raise ValueError(f"{name}: sigma (the noise scale) must be non-negative, got {sigma}")
    return float(sigma)


def diveq_transport(e: torch.Tensor, q: torch.Tensor, sigma: float) -> torch.Tensor:
    """e + ‖q − e‖·sg(d), d = (q − e + ε)/‖q − e + ε‖, ε ~ N(0, σ²I) per token; value q when σ = 0."""
    with float32_arithmetic(e.device.type):
        e32 = at_least_float32(e)
        q32 = q.to(e32.dtype)
        difference = q32 - e32
        direction = difference + sigma * torch.randn_like(e32) if sigma > 0 else difference
        direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True).clamp_min(EPS)
        distance = torch.linalg.vector_norm(difference, dim=-1, keepdim=True)
        decoder_input = e32 + distance * direction.detach()
        if sigma == 0:  # the value is q: snap away the rounding of e + ‖q − e‖·d
            decoder_input = decoder_input + (q32 - decoder_input).detach()
    return decoder_input.to(e.dtype)


@register("diveq")
class DiVeQ(CodebookTransportEstimator):
    """DiVeQ: e + ‖q − e‖·sg(d), d = (q − e + ε)/‖q − e + ε‖; e gets (I − ddᵀ)g, the codebook ddᵀg (Vali et al. 2026)."""

    paper_section = "after the paper: Vali, Bäckström & Solin, ICLR 2026"
    codebook_learning = "decoder"

    def __init__(self, sigma: float = 1e-3):
        self.sigma = check_sigma(self.name, sigma)

    def transport(self, e, q, training):
        return diveq_transport(e, q, self.sigma if training else 0.0)


@register("sf_diveq")
class SpaceFillingDiVeQ(Estimator):
    """SF-DiVeQ: DiVeQ towards the nearest point between consecutive codewords, weights λ ~ U(0, 1) per step."""

    kind = "codebook_transport"
    paper_section = "after the paper: Vali, Bäckström & Solin, ICLR 2026"
    chooses_codes = True  # the point it quantizes to is not the nearest codeword
    codebook_gradient = True
    codebook_learning = "decoder"

    def __init__(self, sigma: float = 1e-3):
        self.sigma = check_sigma(self.name, sigma)

    def quantize(self, e, codes, decode):
        codebook = codes.codebook
        if not codes.training or codebook.shape[0] < 2:
            indices = codes.nearest(e.detach())
            decoder_input = decode(diveq_transport(e, codebook[indices], 0.0))
            return Quantized(decoder_input, indices, decoded_once(decoder_input))
        if codes.search is None:
            raise ValueError(f"estimator {self.name!r} searches interpolated codes, but the quantizer offers no "
                             f"search")
        weights = torch.rand(codebook.shape[0] - 1, 1, device=codebook.device, dtype=codebook.dtype)
        points = (1.0 - weights) * codebook[:-1] + weights * codebook[1:]
        segments = codes.search(e.detach(), points.detach())
        decoder_input = decode(diveq_transport(e, points[segments], self.sigma))
        indices = segments + (weights[segments, 0] >= 0.5).long()
        return Quantized(decoder_input, indices, decoded_once(decoder_input))
