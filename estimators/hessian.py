"""The Hessian approximation (paper §3, A.3): STE forward, encoder gradient g + ∇²_q L·(e − q)."""
from __future__ import annotations

import torch

from .base import DecoderAwareEstimator
from .registry import register


@register("hessian")
class HessianApproximation(DecoderAwareEstimator):
    """Second-order correction of the STE: g + ∇²_q L·(e − q), a Hessian-vector product at q (§3).

    The decoder runs once; the Hessian-vector product is a double backward through it in the direction
    (e − q), as in the authors' code. The correction reaches e only; decoder and codebook see L(D(q)).
    """

    paper_section = "§3, A.3"
    needs_double_backward = True

    def decoder_loss(self, e, q, loss_of):
        z = e + (q.detach().to(e.dtype) - e).detach()
        loss = loss_of(z)
        if not (torch.is_grad_enabled() and e.requires_grad):
            return loss, loss
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        direction = (e - q.to(e.dtype)).detach()
        hessian_times_direction = None
        if g.requires_grad:
            (hessian_times_direction,) = torch.autograd.grad(g, z, grad_outputs=direction, retain_graph=True,
                                                             allow_unused=True)
        if hessian_times_direction is None:  # the loss is affine in z: zero Hessian, the STE gradient is exact
            return loss, loss
        correction = (e * hessian_times_direction.detach()).sum()
        return loss + (correction - correction.detach()), loss
