"""The rotation trick and its norm-scaling variants (paper §4, A.5, A.7, A.9).

All of them have forward value q and differ only in the matrix applied to the gradient on the way back.
"""
from __future__ import annotations

from functools import partial

import torch

from .base import EPS, TransportEstimator, at_least_float32
from .registry import register
from .rotation_math import rotation_backward
from .transport_function import constant_jacobian_transport

GAMMAS = ("norm_ratio", "one", "inverse_sq_distance")


@register("rotation")
class RotationTrick(TransportEstimator):
    """The rotation trick: q_tilde = sg(λ)·sg(R)·e, gradient λRᵀg (§4.2, Algorithm 1; efficient form A.5)."""

    paper_section = "§4.2, A.5"

    def transport(self, e, q):
        return constant_jacobian_transport(e, q, rotation_backward)


@register("rotation_unscaled")
class RotationUnscaled(TransportEstimator):
    """Rotation without norm scaling: q_tilde = sg(R)e + sg(q − Re), gradient Rᵀg (A.9, Table 6/7)."""

    paper_section = "A.9"

    def transport(self, e, q):
        return constant_jacobian_transport(e, q, partial(rotation_backward, scale="one"))


@register("rotation_gamma")
class RotationGamma(TransportEstimator):
    """General norm scaling: q_tilde = γ(e)Re + sg(q − γ(e)Re), γ detached, gradient γRᵀg (A.9.2).

    gamma: "norm_ratio" (γ = ‖q‖/‖e‖, equals `rotation`), "one" (equals `rotation_unscaled`) or
    "inverse_sq_distance" (γ = 1/(8‖q − e‖²), the paper's plotted example; ‖q − e‖² floored at 1e-6).
    """

    paper_section = "A.9.2"

    def __init__(self, gamma: str = "inverse_sq_distance"):
        if gamma not in GAMMAS:
            raise ValueError(f"rotation_gamma: unknown gamma {gamma!r}; valid: {', '.join(GAMMAS)}")
        self.gamma = gamma

    def transport(self, e, q):
        return constant_jacobian_transport(e, q, partial(rotation_backward, scale=self.gamma))


@register("rotation_radial_removed")
class RotationRadialRemoved(TransportEstimator):
    """The authors' VQGAN/ViT-VQGAN variant: q_tilde = ‖q‖·sg(R)·ê with ê not detached (the authors' public VQGAN code).

    Its gradient λ(I − êêᵀ)Rᵀg has no component along e: the radial part is removed. Not the estimator
    of §4.2; offered under its own name as an ablation.
    """

    paper_section = "authors' VQGAN code (not in the paper)"

    def transport(self, e, q):
        return constant_jacobian_transport(e, q, partial(rotation_backward, radial_removed=True))


@register("rotation_through_r")
class RotationThroughR(TransportEstimator):
    """Ablation NOT in the paper: λ·R·e with λ and R kept in the autograd graph (A.7 argues against it).

    λR(e)e equals q for every e in the cell, so the exact derivative is (numerically) zero: this variant
    shows why the paper detaches R and λ. The forward value is snapped to q exactly; ‖e‖, ‖q‖ and
    ‖ê + q̂‖ are floored at 1e-6 so the graph stays finite at the degenerate points.
    """

    paper_section = "A.7 (ablation, not in the paper)"

    def transport(self, e, q):
        q = q.detach().to(e.dtype)
        with torch.autocast(device_type=e.device.type, enabled=False):
            e32, q32 = at_least_float32(e), at_least_float32(q)
            e_norm = torch.linalg.vector_norm(e32, dim=-1, keepdim=True).clamp_min(EPS)
            q_norm = torch.linalg.vector_norm(q32, dim=-1, keepdim=True).clamp_min(EPS)
            e_hat, q_hat = e32 / e_norm, q32 / q_norm
            r = e_hat + q_hat
            r = r / torch.linalg.vector_norm(r, dim=-1, keepdim=True).clamp_min(EPS)
            r_dot_e = (r * e32).sum(-1, keepdim=True)
            e_hat_dot_e = (e_hat * e32).sum(-1, keepdim=True)
            rotated = (q_norm / e_norm) * (e32 - 2.0 * r * r_dot_e + 2.0 * q_hat * e_hat_dot_e)
        rotated = rotated.to(e.dtype)
        return rotated + (q - rotated).detach()
