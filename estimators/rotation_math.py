"""Closed forms of the rotation trick's backward pass (paper §4.2 and A.5), per token, never a D×D matrix.

With ê = e/‖e‖, q̂ = q/‖q‖, c = êᵀq̂, r = (ê + q̂)/‖ê + q̂‖ and R = I − 2rrᵀ + 2q̂êᵀ (R ê = q̂, orthogonal,
det +1), the transpose applied to a gradient g is

    Rᵀg = g − 2r(rᵀg) + 2ê(q̂ᵀg) = g + (2b − k) ê − k q̂,   a = êᵀg, b = q̂ᵀg, k = (a + b)/(1 + c),

because ‖ê + q̂‖² = 2(1 + c). So s·Rᵀg = s·g + α e + β q with per-token scalars α, β.

Degenerate points (fallbacks, all finite):
* ‖e‖ < EPS or ‖q‖ < EPS: ê or q̂ is undefined; the token falls back to the straight-through gradient g.
* 1 + c < EPS (e opposite q): r is undefined; the rrᵀ term is dropped, leaving R = I + 2q̂êᵀ, which for
  ê = −q̂ is the reflection I − 2q̂q̂ᵀ: it still maps ê to q̂ and the gradient stays finite.
"""
from __future__ import annotations

import torch

from .base import EPS


def token_norms(e: torch.Tensor, q: torch.Tensor):
    """‖e‖, ‖q‖ (N, 1) and the mask of tokens where both are non-degenerate."""
    e_norm = torch.linalg.vector_norm(e, dim=-1, keepdim=True)
    q_norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return e_norm, q_norm, (e_norm > EPS) & (q_norm > EPS)


def rotation_backward(g, e, q, scale: str = "norm_ratio", radial_removed: bool = False):
    """s·Rᵀg for tokens (N, D), with s chosen by `scale` (A.9.2).

    scale: "norm_ratio" (λ = ‖q‖/‖e‖, the rotation trick), "one" (no rescaling, A.9) or
    "inverse_sq_distance" (γ = 1/(8‖q − e‖²), A.9.2; ‖q − e‖² is floored at EPS).
    radial_removed: return λ(I − êêᵀ)Rᵀg, the gradient of ‖q‖·sg(R)·ê (the authors' VQGAN scripts).
    """
    e_norm, q_norm, valid = token_norms(e, q)
    safe_e = e_norm.clamp_min(EPS)
    safe_q = q_norm.clamp_min(EPS)
    e_dot_g = torch.linalg.vecdot(e, g, dim=-1).unsqueeze(-1)
    q_dot_g = torch.linalg.vecdot(q, g, dim=-1).unsqueeze(-1)
    cos = torch.linalg.vecdot(e, q, dim=-1).unsqueeze(-1) / (safe_e * safe_q)
    a = e_dot_g / safe_e
    b = q_dot_g / safe_q
    one_plus_cos = 1.0 + cos
    k = torch.where(one_plus_cos > EPS, (a + b) / one_plus_cos.clamp_min(EPS), torch.zeros_like(a))

    if scale == "norm_ratio":
        s = safe_q / safe_e
    elif scale == "one":
        s = torch.ones_like(e_norm)
    elif scale == "inverse_sq_distance":
        sq_distance = (e_norm * e_norm + q_norm * q_norm - 2.0 * cos * e_norm * q_norm).clamp_min(EPS)
        s = 1.0 / (8.0 * sq_distance)
    else:
        raise ValueError(f"unknown scale {scale!r}; valid: norm_ratio, one, inverse_sq_distance")

    coef_e = s * (2.0 * b - k) / safe_e
    coef_q = -s * k / safe_q
    if radial_removed:
        # v = s·Rᵀg = s·g + coef_e·e + coef_q·q; subtract e(eᵀv)/‖e‖² by adjusting coef_e.
        e_dot_v = s * e_dot_g + coef_e * e_norm * e_norm + coef_q * cos * e_norm * q_norm
        coef_e = coef_e - e_dot_v / (safe_e * safe_e)
    grad = torch.addcmul(torch.addcmul(s * g, coef_e, e), coef_q, q)
    return torch.where(valid, grad, g)


def reflection_backward(g, e, q):
    """λHᵀg with H = I − 2wwᵀ, w = (ê − q̂)/‖ê − q̂‖ (A.8): λ[g − (a − b)/(1 − c)·(ê − q̂)].

    Degenerate points: ‖e‖ or ‖q‖ < EPS → straight-through g; 1 − c < EPS (e along q, nothing to reflect)
    → H = I, gradient λg.
    """
    e_norm, q_norm, valid = token_norms(e, q)
    safe_e = e_norm.clamp_min(EPS)
    safe_q = q_norm.clamp_min(EPS)
    cos = torch.linalg.vecdot(e, q, dim=-1).unsqueeze(-1) / (safe_e * safe_q)
    a = torch.linalg.vecdot(e, g, dim=-1).unsqueeze(-1) / safe_e
    b = torch.linalg.vecdot(q, g, dim=-1).unsqueeze(-1) / safe_q
    one_minus_cos = 1.0 - cos
    k = torch.where(one_minus_cos > EPS, (a - b) / one_minus_cos.clamp_min(EPS), torch.zeros_like(a))
    lam = safe_q / safe_e
    grad = torch.addcmul(torch.addcmul(lam * g, -lam * k / safe_e, e), lam * k / safe_q, q)
    return torch.where(valid, grad, g)
