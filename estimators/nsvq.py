"""NSVQ, noise substitution in vector quantization (Vali & Bäckström, IEEE Access 2022); after the paper.

In training the decoder input is e + ‖q − e‖·v/‖v‖ with v ~ N(0, I) drawn per token and nothing detached:
the quantization error is replaced by noise of the same norm, so the gradient reaches e (g plus the part
through ‖q − e‖) and the codebook through ‖q − e‖:

    ∂L/∂e = g + (e − q)/‖q − e‖ · (v̂ᵀg),    ∂L/∂q = (q − e)/‖q − e‖ · (v̂ᵀg),    v̂ = v/‖v‖.

The codebook learns through this path alone (no codebook loss, no commitment term, no EMA). In evaluation the
decoder input is q (written e + sg(q − e), so a gradient taken in evaluation is the STE's). Degenerate point:
at q = e the norm's gradient is taken as 0 (the decoder input is e, ∂L/∂e = g, nothing reaches the codebook).
"""
from __future__ import annotations

import torch

from .base import EPS, CodebookTransportEstimator, at_least_float32, float32_arithmetic
from .registry import register


@register("nsvq")
class NoiseSubstitution(CodebookTransportEstimator):
    """NSVQ: e + ‖q − e‖·v/‖v‖ with v ~ N(0, I) per token in training, q in evaluation (Vali & Bäckström 2022)."""

    paper_section = "after the paper: Vali & Bäckström, IEEE Access 2022"
    codebook_learning = "decoder"

    def transport(self, e, q, training):
        q = q.to(e.dtype)
        if not training:
            return e + (q - e).detach()
        with float32_arithmetic(e.device.type):
            e32, q32 = at_least_float32(e), at_least_float32(q)
            noise = torch.randn_like(e32)
            direction = noise / torch.linalg.vector_norm(noise, dim=-1, keepdim=True).clamp_min(EPS)
            decoder_input = e32 + torch.linalg.vector_norm(q32 - e32, dim=-1, keepdim=True) * direction
        return decoder_input.to(e.dtype)
