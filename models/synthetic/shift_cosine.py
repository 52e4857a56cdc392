"""``points_shift`` (paper A.4, Figure 10 = Figure 4 shifted by +10 per dimension): far from the origin the
rotation trick tends to the STE.

Figure 4's setup: three clusters of points in each of K Voronoi cells (one around the code, two near the
cell's boundary), every point and code shifted by ``shift`` per dimension. One step: each cell's code receives
the update u_c (along q for the upper cells, against q for the lower ones, as in Figure 4's top and bottom
partitions) and each point the estimator's update. Records the estimator's update against the STE's (which is
u_c for every point of the cell) and their mean cosine: far from the origin the rotation tends to the identity
and λ to 1, so the cosine tends to 1 (A.4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..base import ModelFamily
from ..code_search import nearest_code, within_cell_distance
from ..registry import register_family
from .common import (REFUSED, Artifacts, check_positive, estimator_gradient, estimator_name, linear_loss,
                     run_generator, synthetic_training, tolist)


@dataclass
class ShiftCosineArtifacts(Artifacts):
    """What a run records for Figures 4 and 10: the points, the codes' and both estimators' updates, metrics."""

    problem = "points_shift"
    estimator: str
    shift: float
    codes: list
    code_updates: list
    points: list
    assignments: list
    ste_updates: list
    estimator_updates: list
    cosine: list
    updated_points: list
    update_cosine_ste: float
    update_cosine_ste_min: float
    update_norm_ratio: float
    within_cell_distance_change: float
    mean_angle_e_q_deg: float


@dataclass
class PointsShiftParams:
    """points_shift: shift (added to both coordinates of every point and code; A.4 uses 10), num_codes codes
    on a circle of radius code_radius at 45° + k·360°/num_codes, points_per_cluster points in each of three
    Gaussian clusters per cell (std cluster_spread·code_radius; centres at the code and at ±boundary_angle
    degrees from it, same radius), step_size the length of the code's update, init_seed (None: run seed)."""

    shift: float = 0.0
    num_codes: int = 4
    code_radius: float = 1.0
    points_per_cluster: int = 12
    cluster_spread: float = 0.06
    boundary_angle: float = 30.0
    step_size: float = 0.25
    init_seed: int | None = None


_A4_SOURCE = ("paper A.4 / Figure 10 (Figure 4's points shifted by +10 per dimension); the point layout and "
              "step are this harness's reading of Figure 4 (the paper gives no numbers)")
POINTS_SHIFT_PRESETS = {
    "paper": {"model": {"shift": 10.0}, "training": synthetic_training(1), "source": _A4_SOURCE},
    "cpu": {"model": {"shift": 10.0}, "training": synthetic_training(1), "source": "same as paper: " + _A4_SOURCE},
}


@register_family
class PointsShift(ModelFamily):
    """Figure 4's points and one update, shifted away from the origin by `shift` per dimension (paper A.4)."""

    family_name = "points_shift"
    Params = PointsShiftParams
    presets = POINTS_SHIFT_PRESETS
    data_kind = None  # owns its points (drawn from the run seed): no dataset
    refused_estimators = REFUSED

    def __init__(self, params: PointsShiftParams, estimator):
        super().__init__()
        self.params = params
        self.estimator = estimator
        self.estimator_name = estimator_name(estimator)
        generator = run_generator(params.init_seed)
        k, radius = params.num_codes, float(params.code_radius)
        angles = math.pi / 4 + 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        unit = torch.stack([angles.cos(), angles.sin()], -1)
        codes = radius * unit
        offset = math.radians(params.boundary_angle)
        centres = []
        for a in angles.tolist():
            centres += [a, a - offset, a + offset]
        centres = torch.tensor(centres, dtype=torch.float64)
        centres = radius * torch.stack([centres.cos(), centres.sin()], -1).repeat_interleave(
            params.points_per_cluster, 0)
        noise = torch.randn(centres.shape, generator=generator, dtype=torch.float64)
        points = centres + params.cluster_spread * radius * noise
        # Figure 4: the upper cells' codes step along q (push), the lower ones' against q (pull).
        sign = torch.where(unit[:, 1] >= 0, 1.0, -1.0).to(torch.float64)
        directions = sign[:, None] * unit
        shift = float(params.shift)
        self.register_buffer("codes", (codes + shift).float())
        self.register_buffer("initial_points", (points + shift).float())
        self.register_buffer("points", (points + shift).float())
        self.register_buffer("directions", directions.float())
        self.register_buffer("stepped", torch.zeros((), dtype=torch.bool))

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems: list[str] = []
        check_positive(problems, num_codes=params.num_codes, code_radius=params.code_radius,
                       points_per_cluster=params.points_per_cluster, step_size=params.step_size)
        if params.cluster_spread < 0:
            problems.append(f"cluster_spread must be non-negative, got {params.cluster_spread}")
        return problems

    def updates(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Assignments and the STE's and the estimator's updates of `points` (−∇ with the code's step)."""
        indices = nearest_code(points, self.codes)
        q = self.codes[indices]
        ste = self.params.step_size * self.directions[indices]  # the code's update, copied by the STE
        estimator = -estimator_gradient(self.estimator, points, q, linear_loss(-ste))
        cosine = F.cosine_similarity(estimator, ste, dim=-1)
        return {"indices": indices, "ste": ste, "estimator": estimator, "cosine": cosine,
                "norm_ratio": estimator.norm(dim=-1) / ste.norm(dim=-1)}

    def metrics(self) -> dict[str, float]:
        u = self.updates(self.initial_points)
        before = within_cell_distance(self.initial_points, u["indices"])
        after = within_cell_distance(self.initial_points + u["estimator"], u["indices"])
        e, q = self.initial_points, self.codes[u["indices"]]
        angle = torch.rad2deg(torch.acos(F.cosine_similarity(e, q, dim=-1).clamp(-1, 1)))
        return {"update_cosine_ste": float(u["cosine"].mean()), "update_cosine_ste_min": float(u["cosine"].min()),
                "update_norm_ratio": float(u["norm_ratio"].mean()),
                "within_cell_distance_change": float((after - before) / before),
                "mean_angle_e_q_deg": float(angle.mean())}

    def configure_optimizers(self, training):
        return {}

    def training_step(self, batch, ctx, optimizers):
        u = self.updates(self.points)
        with torch.no_grad():
            self.points += u["estimator"]
            self.stepped.fill_(True)
        return self.metrics()  # no "loss": nothing is minimised, the step is the measurement

    def evaluate(self, batches) -> dict[str, float]:
        return self.metrics()

    def artifacts(self) -> dict:
        u = self.updates(self.initial_points)
        return ShiftCosineArtifacts(
            estimator=self.estimator_name, shift=float(self.params.shift), codes=tolist(self.codes),
            code_updates=tolist(self.params.step_size * self.directions), points=tolist(self.initial_points),
            assignments=u["indices"].tolist(), ste_updates=tolist(u["ste"]), estimator_updates=tolist(u["estimator"]),
            cosine=tolist(u["cosine"]), updated_points=tolist(self.points), **self.metrics()).to_json()
