"""The reflection variant (paper A.8): a single Householder reflection of ê onto q̂, λ-scaled."""
from __future__ import annotations

from .base import TransportEstimator
from .registry import register
from .rotation_math import reflection_backward
from .transport_function import constant_jacobian_transport


@register("reflection")
class Reflection(TransportEstimator):
    """Reflection: q_tilde = sg(λ)·sg(H)·e with H = I − 2wwᵀ, w = (ê − q̂)/‖ê − q̂‖; gradient λHᵀg (A.8)."""

    paper_section = "A.8"

    def transport(self, e, q):
        return constant_jacobian_transport(e, q, reflection_backward)
