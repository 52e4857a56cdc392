"""The synchronised update of Huh et al. (ICML 2023, "Straightening Out the Straight-Through Estimator").

Decoder input e + sg(q − e) + νq − sg(νq): the value is q (written sg(q) + (e − sg(e)) + ν(q − sg(q)), which
is q exactly), e receives the STE's g and the codebook receives νg, so each code moves with the decoder's
gradient (scaled by ν) in addition to its codebook loss. The codebook must be learned by a loss
(`codebook_learning: loss`): an EMA codebook would drop that gradient. ν's default, 0.1, is this harness's
choice. No degenerate point: the Jacobians are constants.
"""
from __future__ import annotations

from .base import CodebookTransportEstimator
from .registry import register


@register("sync")
class SynchronisedUpdate(CodebookTransportEstimator):
    """Synchronised update: e + sg(q − e) + νq − sg(νq); e gets g, the codebook νg (Huh et al. 2023)."""

    paper_section = "after the paper: Huh et al., ICML 2023"

    def __init__(self, nu: float = 0.1):
        if not nu >= 0:
            raise ValueError(f"sync: nu (the codebook's share of the decoder gradient) must be non-negative, "
                             f"got {nu}")
        self.nu = float(nu)

    def transport(self, e, q, training):
        q = q.to(e.dtype)
        return q.detach() + (e - e.detach()) + self.nu * (q - q.detach())
