"""Exact gradients by a second decoder pass (paper §3): the encoder is trained like an autoencoder."""
from __future__ import annotations

import torch

from .base import DecoderAwareEstimator
from .registry import register


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by `factor`."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


@register("exact")
class ExactGradients(DecoderAwareEstimator):
    """L = L(D(sg(q))) + κ·L(D(e')), e' = e with its gradient scaled by 1/κ (§3; κ = 1e-6).

    Encoder gradient: ∇_e L(D(e)) (the plain autoencoder gradient). Decoder gradient:
    ∇L(D(q)) + κ∇L(D(e)). The reported reconstruction loss is L(D(q)).
    """

    paper_section = "§3, A.3"

    def __init__(self, kappa: float = 1e-6):
        if not kappa > 0:
            raise ValueError(f"exact: kappa must be positive, got {kappa}")
        self.kappa = float(kappa)

    def decoder_loss(self, e, q, loss_of):
        loss_q = loss_of(q.detach().to(e.dtype))
        if not (torch.is_grad_enabled() and e.requires_grad):
            return loss_q, loss_q
        loss_e = loss_of(_ScaleGradient.apply(e, 1.0 / self.kappa))
        return loss_q + self.kappa * loss_e, loss_q
