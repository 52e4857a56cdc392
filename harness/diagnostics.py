"""Gradient diagnostics on a fixed batch (README "Metrics"; paper §3, §4.3, §6).

* grad_cosine_exact: cosine between the estimator's gradient at the encoder output and the exact autoencoder
  gradient ∇_e L(D(e)) (paper §3: what the STE approximates).
* obtuse_fraction: fraction of tokens whose angle between e and q exceeds π/2 (the §6 limitation, where the
  rotation trick over-rotates).
* push_pull: relative change of the mean pairwise distance between tokens that share a code after one
  normalised gradient step e ← e − η∇_e (η sets the mean step to 1% of the mean ‖e‖): > 0 when points
  are pushed apart, < 0 when pulled together (§4.3, Figure 5). Under the STE it is 0 only when tokens of a
  cell share one gradient (as in §4.3); in a real model each token's decoder gradient differs, so compare
  an estimator's value with the STE's in the same setting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.code_search import within_cell_distance
from models.quantizer import to_tokens

STEP_FRACTION = 0.01


def supports_diagnostics(model) -> bool:
    """Autoencoder families whose estimator has a gradient at a given code (one that chooses its codes from
    logits has no gradient at a fixed evaluation-mode assignment to compare)."""
    return (all(hasattr(model, name) for name in ("encode", "decode", "quantizer", "reconstruction_loss"))
            and not model.quantizer.estimator.chooses_codes)


def gradient_diagnostics(model, x: torch.Tensor) -> dict[str, float]:
    """The three diagnostics for a batch x; the model's state (EMA codebook included) is left unchanged."""
    quantizer = model.quantizer
    was_training = quantizer.training
    quantizer.eval()  # no EMA update from a diagnostic pass
    try:
        with torch.no_grad():
            z0 = model.encode(x).float()
        z = z0.clone().requires_grad_(True)
        out = quantizer(z)
        loss, _ = out.reconstruction_loss(lambda d: model.reconstruction_loss(x, model.decode(d)))
        (grad_estimator,) = torch.autograd.grad(loss, z)
        z_exact = z0.clone().requires_grad_(True)
        (grad_exact,) = torch.autograd.grad(model.reconstruction_loss(x, model.decode(z_exact)), z_exact)
    finally:
        quantizer.train(was_training)
        model.zero_grad(set_to_none=True)

    cosine = F.cosine_similarity(grad_estimator.flatten(), grad_exact.flatten(), dim=0)
    e, q = out.e.detach(), out.q
    obtuse = ((e * q).sum(-1) < 0).float().mean()

    tokens, _ = to_tokens(z0)
    grad_tokens, _ = to_tokens(grad_estimator)
    indices = out.indices.reshape(-1)
    grad_norm = grad_tokens.norm(dim=-1).mean().clamp_min(1e-12)
    eta = STEP_FRACTION * tokens.norm(dim=-1).mean() / grad_norm
    before = within_cell_distance(tokens, indices)
    after = within_cell_distance(tokens - eta * grad_tokens, indices)
    return {
        "grad_cosine_exact": float(cosine),
        "obtuse_fraction": float(obtuse),
        "push_pull": float((after - before) / before.clamp_min(1e-12)),
    }
