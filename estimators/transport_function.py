"""One autograd function for every transport estimator whose Jacobian is a constant (detached) matrix.

Forward: the decoder input is exactly q (in e's dtype) — a transport estimator never changes the forward
value (paper §4.1). When q already has e's dtype the forward is free: q itself is returned (autograd hands
out an alias of it, so the decoder input must not be modified in place — autograd refuses that with an
error; q is the detached codebook gather and is never written to). Otherwise it is q converted to e's
dtype. Backward: ``grad_e = backward_map(g, e, q)``, computed in float32 and returned in e's
dtype; nothing flows to q. Doing the backward by hand lets each estimator use its closed form with
per-token scalars (e.g. λRᵀg = λg + αe + βq, §4.2) instead of building D×D matrices or N×D temporaries.
"""
from __future__ import annotations

import torch

from .base import at_least_float32, float32_arithmetic


class _ConstantJacobianTransport(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e, q, backward_map):
        ctx.save_for_backward(e, q)
        ctx.backward_map = backward_map
        if q.dtype == e.dtype:
            return q  # no copy: the output aliases q (see the module docstring)
        return q.to(dtype=e.dtype)

    @staticmethod
    def backward(ctx, g):
        e, q = ctx.saved_tensors
        e32 = at_least_float32(e)
        with float32_arithmetic(e.device.type):
            grad_e = ctx.backward_map(at_least_float32(g).to(e32.dtype), e32, q.to(e32.dtype))
        return grad_e.to(e.dtype), None, None


def constant_jacobian_transport(e: torch.Tensor, q: torch.Tensor, backward_map) -> torch.Tensor:
    """Decoder input with value q whose backward is `backward_map(g, e, q)` (float32 tensors (N, D))."""
    if e.shape != q.shape:
        raise ValueError(f"transport needs e and q of the same shape, got {tuple(e.shape)} and {tuple(q.shape)}")
    return _ConstantJacobianTransport.apply(e, q.detach(), backward_map)
