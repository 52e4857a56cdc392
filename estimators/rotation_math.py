"""Closed forms of the rotation trick's backward pass (paper §4.2 and A.5), per token, never a D×D matrix.

With ê = e/‖e‖, q̂ = q/‖q‖, c = êᵀq̂, r = (ê + q̂)/‖ê + q̂‖ and R = I − 2rrᵀ + 2q̂êᵀ (R ê = q̂, orthogonal,
det +1), the transpose applied to a gradient g is

    Rᵀg = g − 2r(rᵀg) + 2ê(q̂ᵀg) = g + (2b − k) ê − k q̂,   a = êᵀg, b = q̂ᵀg, k = (a + b)/(1 + c),

because ‖ê + q̂‖² = 2(1 + c). So s·Rᵀg = s·g + α e + β q with per-token scalars α, β.

Degenerate points (fallbacks, all finite):
* ‖e‖ < EPS or ‖q‖ < EPS: ê or q̂ is undefined; the token falls back to the straight-through gradient g.
* 1 + c < EPS (e opposite q): r is undefined; the rrᵀ term is dropped, leaving R = I + 2q̂êᵀ, which for
  ê = −q̂ is the reflection I − 2q̂q̂ᵀ: it still maps ê to q̂ and the gradient stays finite.
* 1 + c < NEAR_OPPOSITE (1e-2): 1 + c and a + b, computed from c, a and b, would cancel in float32, so these
  tokens are recomputed from ê + q̂ (1 + c = ‖ê + q̂‖²/2, a + b = (ê + q̂)ᵀg).

Two implementations of each closed form share the per-token scalar arithmetic (`_rotation_coefficients`,
`_reflection_coefficients`) and differ only in how the (N, D) passes are done (benchmarks/bench_estimators.py):
* eager: two norms and three per-token dot products (one read of e, q, g each per reduction, no (N, D)
  temporaries), arithmetic on (N, 1) scalars, and one (N, D) output written by a multiply and two in-place
  fused multiply-adds. Only the output is a new (N, D) buffer: on the CPU a fresh large buffer costs page
  faults comparable to a full pass over memory, so none is allocated in between.
* plain: the same with out-of-place ops, for torch.compile to fuse into one or two loops.
estimators/fused.py decides which one runs.
"""
from __future__ import annotations

import torch

from . import fused
from .base import EPS

#: Per-token dot products go through the CPU's batched-matmul kernel (one pass, no temporary) only when the
#: contraction is short enough for PyTorch's plain-loop kernel (contraction × 1 × 1 < 400), which is exact
#: float32 accumulation whatever the matmul precision settings; otherwise `linalg.vecdot` (mul + sum).
_PLAIN_BMM_MAX_DIM = 399


def _fp32_matmul_is_exact() -> bool:
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    precision = getattr(mkldnn_matmul, "fp32_precision", "none")
    return precision in ("none", "ieee")


def row_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row dot products (N, 1) of x, y (N, D), in their dtype (float32 accumulation for float32)."""
    if (x.device.type == "cpu" and x.shape[-1] <= _PLAIN_BMM_MAX_DIM and x.dtype in (torch.float32, torch.float64)
            and _fp32_matmul_is_exact()):
        # (N, 1, D) @ (N, D, 1): reads each operand once and writes N scalars, where vecdot would first
        # write an (N, D) product (a fresh buffer, i.e. page faults, for large N·D).
        return torch.bmm(x.unsqueeze(-2), y.unsqueeze(-1)).view(x.shape[0], 1)
    return torch.linalg.vecdot(x, y, dim=-1).unsqueeze(-1)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Per-row Euclidean norms (N, 1)."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _sum_of_products(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row Σ x·y (N, 1) written as a product and a sum: the form torch.compile fuses into one loop."""
    return (x * y).sum(dim=-1, keepdim=True)


def _fallback_to_g(out, g, valid):
    """out, with g on the tokens that are not `valid` (in place)."""
    # Skip the masked copy when every token is regular (the usual case); the check is a device sync, so on
    # accelerators the copy is done unconditionally (it is cheap there).
    if out.device.type != "cpu" or not bool(valid.all()):
        torch.where(valid, out, g, out=out)
    return out


def _combine(g, e, q, coef_g, coef_e, coef_q, valid, out=None):
    """coef_g·g + coef_e·e + coef_q·q (coef_g None means 1), and g itself on the tokens that are not `valid`.

    One (N, D) buffer (`out`, or a new one), filled by a multiply (or the first fused multiply-add) and
    updated in place. The per-token order of operations is (coef_g·g + coef_e·e) + coef_q·q, as two chained
    `addcmul`s would do.
    """
    if coef_g is None:
        out = torch.addcmul(g, e, coef_e, out=out) if out is not None else torch.addcmul(g, e, coef_e)
    else:
        out = torch.mul(g, coef_g, out=out) if out is not None else torch.mul(g, coef_g)
        out.addcmul_(e, coef_e)
    out.addcmul_(q, coef_q)
    return _fallback_to_g(out, g, valid)


#: Tokens with 1 + cos(e, q) below this (computed from cos, where float32 cancels) get 1 + cos and (ê + q̂)ᵀg
#: recomputed from the vector ê + q̂ (`_recompute_near_opposite`).
NEAR_OPPOSITE = 1e-2


def _rotation_coefficients(e_norm, q_norm, e_dot_q, e_dot_g, q_dot_g, scale, radial_removed, sq_distance=None,
                           one_plus_cos=None, a_plus_b=None):
    """Per-token (s, coef_e, coef_q, valid, 1 + cos) with s·Rᵀg = s·g + coef_e·e + coef_q·q (s None means 1).

    Inputs are (N, 1): the norms and dot products of e, q, g, and ‖q − e‖² for "inverse_sq_distance".
    `one_plus_cos` = ‖ê + q̂‖²/2 and `a_plus_b` = (ê + q̂)ᵀg replace the values derived from the dot products
    when given (accurate near e = −q). `valid` marks the tokens that keep the rotation (both norms above EPS);
    the others take g.
    """
    valid = (e_norm > EPS) & (q_norm > EPS)
    safe_e = e_norm.clamp_min(EPS)
    safe_q = q_norm.clamp_min(EPS)
    cos = e_dot_q / (safe_e * safe_q)
    a = e_dot_g / safe_e
    b = q_dot_g / safe_q
    if one_plus_cos is None:
        one_plus_cos = cos + 1.0
    if a_plus_b is None:
        a_plus_b = a + b
    k = torch.where(one_plus_cos > EPS, a_plus_b / one_plus_cos.clamp_min(EPS), 0.0)
    if scale == "norm_ratio":
        s = safe_q / safe_e
    elif scale == "one":
        s = None
    else:
        s = 1.0 / (8.0 * sq_distance.clamp_min(EPS))
    # coef_e = s(2b − k)/‖e‖, coef_q = −s·k/‖q‖
    two_b_minus_k = b * 2.0 - k
    if s is None:
        coef_e = two_b_minus_k / safe_e
        coef_q = -(k / safe_q)
    else:
        coef_e = two_b_minus_k * s / safe_e
        coef_q = -s * k / safe_q
    if radial_removed:
        # v = s·Rᵀg = s·g + coef_e·e + coef_q·q; subtract e(eᵀv)/‖e‖² by adjusting coef_e.
        s_e_dot_g = e_dot_g if s is None else s * e_dot_g
        e_dot_v = s_e_dot_g + coef_e * e_norm * e_norm + coef_q * cos * e_norm * q_norm
        coef_e = coef_e - e_dot_v / (safe_e * safe_e)
    return s, coef_e, coef_q, valid, one_plus_cos


def _rotation_backward_eager(g, e, q, scale, radial_removed, near_opposite=False):
    """(s·Rᵀg, 1 + cos) with eager ops; `near_opposite`: take 1 + cos and a + b from ê + q̂ (an extra pass)."""
    out = None
    sq_distance = None
    if scale == "inverse_sq_distance":
        # ‖q − e‖² directly: the law of cosines would cancel catastrophically in float32 near e = q. The
        # difference is written into the buffer that then receives the result (no extra (N, D) allocation).
        out = torch.sub(q, e)
        sq_distance = row_dot(out, out)
    e_norm, q_norm = _norm(e), _norm(q)
    accurate = {}
    if near_opposite:
        direction = e / e_norm.clamp_min(EPS) + q / q_norm.clamp_min(EPS)
        accurate = {"one_plus_cos": row_dot(direction, direction) * 0.5, "a_plus_b": row_dot(direction, g)}
    s, coef_e, coef_q, valid, one_plus_cos = _rotation_coefficients(
        e_norm, q_norm, row_dot(e, q), row_dot(e, g), row_dot(q, g), scale, radial_removed, sq_distance, **accurate)
    return _combine(g, e, q, s, coef_e, coef_q, valid, out=out), one_plus_cos


def _rotation_backward_plain(g, e, q, scale, radial_removed):
    sq_distance = _sum_of_products(q - e, q - e) if scale == "inverse_sq_distance" else None
    e_norm, q_norm = _sum_of_products(e, e).sqrt(), _sum_of_products(q, q).sqrt()
    s, coef_e, coef_q, valid, one_plus_cos = _rotation_coefficients(
        e_norm, q_norm, _sum_of_products(e, q), _sum_of_products(e, g), _sum_of_products(q, g), scale,
        radial_removed, sq_distance)
    out = coef_e * e + coef_q * q + (g if s is None else s * g)
    return torch.where(valid, out, g), one_plus_cos


def _recompute_near_opposite(out, one_plus_cos, g, e, q, scale, radial_removed, sync_free=None):
    """`out` with the tokens whose 1 + cos is below NEAR_OPPOSITE recomputed from ê + q̂.

    1 + c from c loses about 1e-7/(1 + c) relative in float32 (1-3% gradient error at 1 + c = 1e-5), and so
    does a + b; ‖ê + q̂‖²/2 and (ê + q̂)ᵀg do not cancel. Such tokens are rare (q is e's nearest code).
    `sync_free` (default: on CUDA): recompute every token and select with torch.where, an extra pass that
    never waits for the device; otherwise only the near-opposite tokens are recomputed, in place, after one
    check for them (a device synchronisation, free on the CPU). Both give the same values per token.
    """
    near = one_plus_cos < NEAR_OPPOSITE
    if out.is_cuda if sync_free is None else sync_free:
        accurate = _rotation_backward_eager(g, e, q, scale, radial_removed, near_opposite=True)[0]
        return torch.where(near, accurate, out)
    near = near.view(-1)
    if not bool(near.any()):
        return out
    rows = near.nonzero().view(-1)
    out[rows] = _rotation_backward_eager(g[rows], e[rows], q[rows], scale, radial_removed, near_opposite=True)[0]
    return out


def rotation_backward(g, e, q, scale: str = "norm_ratio", radial_removed: bool = False):
    """s·Rᵀg for tokens (N, D), with s chosen by `scale` (A.9.2); eager or compiled per estimators/fused.py.

    scale: "norm_ratio" (λ = ‖q‖/‖e‖, the rotation trick), "one" (no rescaling, A.9) or
    "inverse_sq_distance" (γ = 1/(8‖q − e‖²), A.9.2; ‖q − e‖² is floored at EPS).
    radial_removed: return λ(I − êêᵀ)Rᵀg, the gradient of ‖q‖·sg(R)·ê (the authors' VQGAN scripts).
    Tokens near e = −q are recomputed without float32 cancellation (`_recompute_near_opposite`).
    """
    if scale not in ("norm_ratio", "one", "inverse_sq_distance"):
        raise ValueError(f"unknown scale {scale!r}; valid: norm_ratio, one, inverse_sq_distance")
    out, one_plus_cos = fused.dispatch(_rotation_backward_plain, _rotation_backward_eager, g, e, q, scale=scale,
                                       radial_removed=radial_removed)
    return _recompute_near_opposite(out, one_plus_cos, g, e, q, scale, radial_removed)


def _reflection_coefficients(e_norm, q_norm, one_minus_cos, a_minus_b):
    """Per-token (λ, −k, valid) with λHᵀg = λ(g − k(ê − q̂)); 1 − c < EPS gives k = 0 (H = I)."""
    valid = (e_norm > EPS) & (q_norm > EPS)
    k = torch.where(one_minus_cos > EPS, a_minus_b / one_minus_cos.clamp_min(EPS), 0.0)
    return q_norm.clamp_min(EPS) / e_norm.clamp_min(EPS), -k, valid


def _reflection_backward_eager(g, e, q):
    e_norm, q_norm = _norm(e), _norm(q)
    # 1 − c = ‖ê − q̂‖²/2 and a − b = (ê − q̂)ᵀg from the difference itself: computing them from c would
    # cancel in float32 for the ordinary case e close to q (≈0.3% gradient error at 1 − c = 1e-4).
    # ê − q̂ is built in the buffer that then receives the result λ(g − k(ê − q̂)): one (N, D) allocation.
    direction = torch.div(e, e_norm.clamp_min(EPS))
    direction.addcdiv_(q, q_norm.clamp_min(EPS), value=-1.0)
    lam, minus_k, valid = _reflection_coefficients(e_norm, q_norm, row_dot(direction, direction).mul_(0.5),
                                                   row_dot(direction, g))
    out = torch.addcmul(g, direction, minus_k, out=direction).mul_(lam)
    return _fallback_to_g(out, g, valid)


def _reflection_backward_plain(g, e, q):
    e_norm, q_norm = _sum_of_products(e, e).sqrt(), _sum_of_products(q, q).sqrt()
    direction = e / e_norm.clamp_min(EPS) - q / q_norm.clamp_min(EPS)
    lam, minus_k, valid = _reflection_coefficients(e_norm, q_norm, _sum_of_products(direction, direction) * 0.5,
                                                   _sum_of_products(direction, g))
    return torch.where(valid, (g + minus_k * direction) * lam, g)


def reflection_backward(g, e, q):
    """λHᵀg with H = I − 2wwᵀ, w = (ê − q̂)/‖ê − q̂‖ (A.8): λ[g − (a − b)/(1 − c)·(ê − q̂)].

    Degenerate points: ‖e‖ or ‖q‖ < EPS → straight-through g; 1 − c < EPS (e along q, nothing to reflect)
    → H = I, gradient λg. Fused by torch.compile per estimators/fused.py.
    """
    return fused.dispatch(_reflection_backward_plain, _reflection_backward_eager, g, e, q)
