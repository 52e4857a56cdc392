"""The pre-optimisation code (as committed in a45e62f), kept only as the "before" variant of the benchmarks.

Verbatim copies of estimators/rotation_math.py `rotation_backward` (with its `token_norms`), the forward of
estimators/transport_function.py (which copied q) and models/code_search.py `nearest_code` as they were
before the "Performance" work, so BENCHMARKS.md can show before/after measured in the same run.
"""
from __future__ import annotations

import torch

from estimators.base import EPS, at_least_float32, float32_arithmetic

#: Score-matrix elements per chunk (2^24 float32 = 64 MiB).
DEFAULT_BUDGET = 1 << 24


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



class _CopyingTransport(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e, q, backward_map):
        ctx.save_for_backward(e, q)
        ctx.backward_map = backward_map
        return q.detach().to(dtype=e.dtype, copy=True)

    @staticmethod
    def backward(ctx, g):
        e, q = ctx.saved_tensors
        with float32_arithmetic(e.device.type):
            grad_e = ctx.backward_map(at_least_float32(g), at_least_float32(e),
                                      at_least_float32(q).to(at_least_float32(e).dtype))
        return grad_e.to(e.dtype), None, None


def rotation_transport(e, q):
    """The rotation trick as it was: copying forward, unfused backward."""
    return _CopyingTransport.apply(e, q.detach(), rotation_backward)


def chunk_rows(num_codes: int, budget: int = DEFAULT_BUDGET) -> int:
    """Rows of e per chunk so that a (rows, K) score matrix holds at most `budget` elements."""
    return max(1, budget // max(1, num_codes))



@torch.no_grad()
def nearest_code(e: torch.Tensor, codebook: torch.Tensor, lookup: str = "euclidean", chunk_size: int | None = None):
    """Index of the nearest code for each row of e (N, D) in codebook (K, D).

    lookup "euclidean" minimises the squared distance; "cosine" maximises the dot product (the caller passes
    l2-normalised e and codebook). `chunk_size` rows per matrix product; None picks it from K.
    """
    if lookup not in ("euclidean", "cosine"):
        raise ValueError(f"unknown lookup {lookup!r}; valid: euclidean, cosine")
    codebook = codebook.to(e.dtype)
    rows = chunk_size or chunk_rows(codebook.shape[0])
    code_sq = (codebook * codebook).sum(-1) if lookup == "euclidean" else None
    out = torch.empty(e.shape[0], dtype=torch.long, device=e.device)
    for start in range(0, e.shape[0], rows):
        chunk = e[start : start + rows]
        if lookup == "euclidean":
            scores = torch.addmm(code_sq, chunk, codebook.t(), beta=1.0, alpha=-2.0)
            out[start : start + rows] = scores.argmin(-1)
        else:
            out[start : start + rows] = (chunk @ codebook.t()).argmax(-1)
    return out
