"""The straight-through estimator (paper §3): q_tilde = e + sg(q − e); the gradient at e is g."""
from __future__ import annotations

from .base import TransportEstimator
from .registry import register


@register("ste")
class StraightThrough(TransportEstimator):
    """Straight-through: copies the gradient at q to e unchanged (§3)."""

    paper_section = "§3"

    def transport(self, e, q):
        return e + (q.detach().to(e.dtype) - e).detach()
