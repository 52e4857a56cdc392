"""Shared pytest setup: make the repository importable and seed torch for every test."""
from __future__ import annotations

import os
import sys

import pytest
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same RNG state (tests must not depend on their order)."""
    torch.manual_seed(0)
    yield


# --------------------------------------------------------------------------------------------------
# An independent float64 reference for the transport estimators' gradients.
# --------------------------------------------------------------------------------------------------

#: The degenerate-point threshold documented in estimators/base.py (restated, not imported).
REFERENCE_EPS = 1e-6

#: Every transport estimator configuration the estimator and quantizer tests cross (name, params).
TRANSPORT_CONFIGS = [
    ("ste", {}),
    ("rotation", {}),
    ("reflection", {}),
    ("rotation_unscaled", {}),
    ("rotation_gamma", {"gamma": "norm_ratio"}),
    ("rotation_gamma", {"gamma": "one"}),
    ("rotation_gamma", {"gamma": "inverse_sq_distance"}),
    ("rotation_through_r", {}),
    ("rotation_radial_removed", {}),
]


def config_id(name: str, params: dict) -> str:
    return name + "".join(f"[{v}]" for v in params.values())


def reference_transport_gradient(name: str, params: dict, e, q, g):
    """∇_e of <q_tilde, g> for one transport estimator, from explicit D×D matrices in float64.

    Built per token with torch.outer straight from the paper's formulas (§4.2, A.8, A.9), with the documented
    fallbacks of estimators/rotation_math.py:
    * ‖e‖ or ‖q‖ below EPS → straight-through g;
    * rotation family with 1 + cos(e, q) below EPS → the rrᵀ term is dropped: R = I + 2q̂êᵀ;
    * reflection with 1 − cos(e, q) below EPS → H = I, gradient λg;
    * γ = 1/(8‖q − e‖²) with ‖q − e‖² floored at EPS.
    `rotation_through_r` has no closed form here (its exact derivative is 0 inside a cell; tested apart).
    """
    e, q, g = (t.detach().to(torch.float64) for t in (e, q, g))
    if name == "ste":
        return g.clone()
    if name == "rotation_through_r":
        raise ValueError("rotation_through_r has no matrix closed form (tested separately)")
    rows = []
    dim = e.shape[-1]
    eye = torch.eye(dim, dtype=torch.float64)
    for e_i, q_i, g_i in zip(e, q, g):
        e_norm, q_norm = torch.linalg.norm(e_i), torch.linalg.norm(q_i)
        if e_norm < REFERENCE_EPS or q_norm < REFERENCE_EPS:
            rows.append(g_i.clone())
            continue
        e_hat, q_hat = e_i / e_norm, q_i / q_norm
        cos = torch.dot(e_hat, q_hat)
        lam = q_norm / e_norm
        if name == "reflection":
            if 1.0 - cos < REFERENCE_EPS:
                matrix = eye
            else:
                w = (e_hat - q_hat) / torch.linalg.norm(e_hat - q_hat)
                matrix = eye - 2.0 * torch.outer(w, w)
            rows.append(lam * matrix.T @ g_i)
            continue
        if 1.0 + cos < REFERENCE_EPS:
            matrix = eye + 2.0 * torch.outer(q_hat, e_hat)
        else:
            r = (e_hat + q_hat) / torch.linalg.norm(e_hat + q_hat)
            matrix = eye - 2.0 * torch.outer(r, r) + 2.0 * torch.outer(q_hat, e_hat)
        if name in ("rotation", "rotation_radial_removed"):
            scale = lam
        elif name == "rotation_unscaled":
            scale = torch.tensor(1.0, dtype=torch.float64)
        elif name == "rotation_gamma":
            gamma = params.get("gamma", "inverse_sq_distance")
            if gamma == "norm_ratio":
                scale = lam
            elif gamma == "one":
                scale = torch.tensor(1.0, dtype=torch.float64)
            else:
                scale = 1.0 / (8.0 * torch.clamp(((q_i - e_i) ** 2).sum(), min=REFERENCE_EPS))
        else:
            raise ValueError(f"no reference for {name!r}")
        grad = scale * matrix.T @ g_i
        if name == "rotation_radial_removed":
            grad = (eye - torch.outer(e_hat, e_hat)) @ grad
        rows.append(grad)
    return torch.stack(rows)


@pytest.fixture
def reference_gradient():
    """The float64 explicit-matrix reference (see `reference_transport_gradient`)."""
    return reference_transport_gradient


@pytest.fixture(params=["eager", "compiled"])
def transport_backend(request, monkeypatch):
    """Run the test with each form of the backward (estimators/fused.py): eager (mode "off") and torch.compile'd
    (mode "on"). Compiled runs raise instead of silently running uncompiled if torch.compile's recompile limit
    is reached.
    """
    import estimators

    if request.param == "compiled":
        monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    estimators.set_fused_backward({"eager": "off", "compiled": "on"}[request.param])
    yield request.param
    estimators.set_fused_backward(None)
