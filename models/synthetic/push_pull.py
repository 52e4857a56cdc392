"""Push and pull within Voronoi cells: ``toy2d_field`` with ``figure: push_pull`` (paper §4.3, Figures 4-5).

Every code takes a step of length ``step_size`` along q̂ ("along") or against it ("against"); each encoder
output e takes the estimator's step. The change of ‖e − q‖ after both steps is 0 for the STE, > 0 (pushed
away) for points at a large angle to q when the step points along q, < 0 (pulled in) when it points against q
(Figure 5). Here "along/against" is the direction of the update −η∇_qL relative to q, the reading under which
the paper's text (push for φ < π/2, pull for φ > π/2) holds.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..code_search import nearest_code
from .common import GridArtifacts, estimator_gradient, linear_loss, tolist

DIRECTIONS = ("along", "against")
#: The prefixes of the metric fields of PushPullArtifacts.
METRICS = ("distance_change_", "pushed_fraction_", "pulled_fraction_")


@dataclass
class PushPullArtifacts(GridArtifacts):
    """What a run records for Figures 4-5: per position and direction, e's step (M, 2) and the change of
    ‖e − q‖ (M,); metrics per direction, changes in units of `step_size` (wide/narrow: the half of the
    positions at the larger/smaller angle to their code; pushed/pulled: the fraction that moved away/in)."""

    figure_kind = "push_pull"
    distance_change_along: float
    distance_change_along_wide: float
    distance_change_along_narrow: float
    pushed_fraction_along: float
    pulled_fraction_along: float
    distance_change_against: float
    distance_change_against_wide: float
    distance_change_against_narrow: float
    pushed_fraction_against: float
    pulled_fraction_against: float
    assignments: list
    step_size: float
    along_change: list
    along_step: list
    against_change: list
    against_step: list

    def metrics(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith(METRICS)}

    def change(self, direction: str) -> list:
        """The change of ‖e − q‖ at each position when the codes step `direction` ("along" or "against")."""
        return getattr(self, f"{direction}_change")

    def mean_change(self, direction: str, half: str) -> float:
        """Mean change per unit step over the `half` ("wide" or "narrow") of the positions."""
        return getattr(self, f"distance_change_{direction}_{half}")


def steps(estimator, positions: torch.Tensor, codes: torch.Tensor, step_size: float) -> dict:
    """Change of ‖e − q‖ after one step of e (estimator) and of q (step_size along ±q̂), per direction."""
    indices = nearest_code(positions, codes)
    q = codes[indices]
    out = {"indices": indices}
    for name, sign in zip(DIRECTIONS, (1.0, -1.0)):
        code_step = sign * step_size * F.normalize(q, dim=-1)
        e_step = -estimator_gradient(estimator, positions, q, linear_loss(-code_step))
        before = (positions - q).norm(dim=-1)
        after = (positions + e_step - (q + code_step)).norm(dim=-1)
        out[f"{name}_change"] = after - before
        out[f"{name}_step"] = e_step
    return out


def measure(estimator, grid: dict, positions: torch.Tensor, codes: torch.Tensor, step_size: float
            ) -> PushPullArtifacts:
    """Both directions' steps and their metrics; `grid` holds the GridArtifacts fields other than codes and
    positions."""
    moved = steps(estimator, positions, codes, step_size)
    q = codes[moved["indices"]]
    angle = torch.acos(F.cosine_similarity(positions, q, dim=-1).clamp(-1.0, 1.0))
    wide = angle > angle.median()  # the half of the positions at the larger angle to their code
    metrics = {}
    for name in DIRECTIONS:
        change = moved[f"{name}_change"] / step_size
        metrics[f"distance_change_{name}"] = float(change.mean())
        metrics[f"distance_change_{name}_wide"] = float(change[wide].mean())
        metrics[f"distance_change_{name}_narrow"] = float(change[~wide].mean())
        metrics[f"pushed_fraction_{name}"] = float((change > 1e-6).float().mean())
        metrics[f"pulled_fraction_{name}"] = float((change < -1e-6).float().mean())
    return PushPullArtifacts(**grid, codes=tolist(codes), positions=tolist(positions), **metrics,
                             assignments=moved["indices"].tolist(), step_size=float(step_size),
                             **{key: tolist(value) for key, value in moved.items() if key != "indices"})
