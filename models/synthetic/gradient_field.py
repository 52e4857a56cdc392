"""The gradient field of ``toy2d_field`` with ``figure: field`` (paper §3, Figure 2).

At every encoder output e of a grid: the exact ∇f(e) of f = x² + y² (``quadratic``) or log|x/2 + tanh y|
(``log_tanh``), next to the gradient the estimator transports through the quantization e → q. The STE copies
∇f(q) to the whole cell (the checkerboard); the rotation trick varies within a cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..code_search import nearest_code
from .common import GridArtifacts, estimator_gradient, tolist


def quadratic(z: torch.Tensor) -> torch.Tensor:
    """x² + y² (Figure 2, top)."""
    return (z * z).sum(-1)


def log_tanh(z: torch.Tensor) -> torch.Tensor:
    """log|x/2 + tanh(y)| (Figure 2, bottom); |·| floored at 1e-12 on the curve where it is −∞."""
    return torch.log((0.5 * z[..., 0] + torch.tanh(z[..., 1])).abs().clamp_min(1e-12))


FUNCTIONS = {"quadratic": quadratic, "log_tanh": log_tanh}


@dataclass
class GradientFieldArtifacts(GridArtifacts):
    """What a run records for Figure 2: the three fields at every position, each (M, 2), and their metrics."""

    figure_kind = "field"
    field_cosine_exact: float  # mean cosine between the estimator's field and the exact one
    field_within_cell_spread: float  # mean deviation from the cell's mean field, relative to the mean norm
    assignments: list
    exact_field: list
    ste_field: list
    estimator_field: list

    def metrics(self) -> dict[str, float]:
        return {"field_cosine_exact": self.field_cosine_exact,
                "field_within_cell_spread": self.field_within_cell_spread}


def fields(estimator, function: str, positions: torch.Tensor, codes: torch.Tensor) -> dict:
    """Exact ∇f(e), the STE's ∇f(q) and the estimator's gradient at every position e (M, 2)."""
    f = FUNCTIONS[function]
    indices = nearest_code(positions, codes)
    q = codes[indices]
    e = positions.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (exact,) = torch.autograd.grad(f(e).sum(), e)
        qq = q.detach().clone().requires_grad_(True)
        (at_code,) = torch.autograd.grad(f(qq).sum(), qq)
    transported = estimator_gradient(estimator, positions, q, lambda z: f(z).sum())
    return {"indices": indices, "exact": exact.detach(), "ste": at_code.detach(), "estimator": transported}


def measure(estimator, grid: dict, positions: torch.Tensor, codes: torch.Tensor) -> GradientFieldArtifacts:
    """The field and its metrics; `grid` holds the GridArtifacts fields other than codes and positions."""
    field = fields(estimator, grid["function"], positions, codes)
    cosine = F.cosine_similarity(field["estimator"], field["exact"], dim=-1)
    scale = field["estimator"].norm(dim=-1).mean().clamp_min(1e-12)
    spread = []
    for k in torch.unique(field["indices"]):
        cell = field["estimator"][field["indices"] == k]
        spread.append((cell - cell.mean(0)).norm(dim=-1).mean())
    return GradientFieldArtifacts(
        **grid, codes=tolist(codes), positions=tolist(positions), field_cosine_exact=float(cosine.mean()),
        field_within_cell_spread=float(torch.stack(spread).mean() / scale), assignments=field["indices"].tolist(),
        exact_field=tolist(field["exact"]), ste_field=tolist(field["ste"]), estimator_field=tolist(field["estimator"]))
