"""``toy2d_field``: a codes_per_side² grid of codes in [-extent, extent]², evaluated on a finer grid of encoder
outputs e, for two figures: the gradient field (``figure: field``, paper §3 Figure 2; gradient_field.py) and
push and pull within cells (``figure: push_pull``, §4.3 Figures 4-5; push_pull.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import ModelFamily
from ..registry import register_family
from . import gradient_field, push_pull
from .common import REFUSED, check_positive, estimator_name, synthetic_training


@dataclass
class Toy2DFieldParams:
    """toy2d_field: figure "field" (Figure 2) or "push_pull" (Figures 4-5); function "quadratic" or
    "log_tanh" (field only); codes_per_side² codes at the cell centres of a regular grid on
    [-extent, extent]²; resolution² encoder outputs e at the cell centres of a finer grid (none on a Voronoi
    boundary when resolution is a multiple of codes_per_side); step_size the length of a code's update
    (push_pull)."""

    figure: str = "field"
    function: str = "quadratic"
    codes_per_side: int = 4
    extent: float = 2.0
    resolution: int = 32
    step_size: float = 0.05


FIGURE_KINDS = ("field", "push_pull")
_FIG2_SOURCE = ("paper §3 Figure 2 (16 codes, f = x² + y² and log|x/2 + tanh y|) and §4.3 Figures 4-5; the "
                "domain and grid are this harness's choice (the paper gives none)")
TOY2D_PRESETS = {
    "paper": {"model": {}, "training": synthetic_training(1), "source": _FIG2_SOURCE},
    "cpu": {"model": {}, "training": synthetic_training(1), "source": "same as paper: " + _FIG2_SOURCE},
}


def centred_grid(count: int, extent: float) -> torch.Tensor:
    """The centres of `count` equal cells covering [-extent, extent]."""
    return (torch.arange(count, dtype=torch.float32) + 0.5) / count * 2.0 * extent - extent


@register_family
class Toy2DField(ModelFamily):
    """The STE's checkerboard gradient field vs the rotation trick's (Figure 2), and push/pull (Figure 5)."""

    family_name = "toy2d_field"
    Params = Toy2DFieldParams
    presets = TOY2D_PRESETS
    data_kind = None  # owns its points (drawn from the run seed): no dataset
    refused_estimators = REFUSED

    def __init__(self, params: Toy2DFieldParams, estimator):
        super().__init__()
        self.params = params
        self.estimator = estimator
        self.estimator_name = estimator_name(estimator)
        axis = centred_grid(params.codes_per_side, params.extent)
        self.register_buffer("codes", torch.cartesian_prod(axis, axis).flip(-1).contiguous())  # (x, y), row-major in y
        fine = centred_grid(params.resolution, params.extent)
        self.register_buffer("positions", torch.cartesian_prod(fine, fine).flip(-1).contiguous())

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems: list[str] = []
        if params.figure not in FIGURE_KINDS:
            problems.append(f"figure {params.figure!r} is not one of {', '.join(FIGURE_KINDS)}")
        if params.function not in gradient_field.FUNCTIONS:
            problems.append(f"function {params.function!r} is not one of {', '.join(gradient_field.FUNCTIONS)}")
        check_positive(problems, codes_per_side=params.codes_per_side, extent=params.extent,
                       resolution=params.resolution, step_size=params.step_size)
        return problems

    def measure(self):
        """The figure's artifacts (GradientFieldArtifacts or PushPullArtifacts), metrics included."""
        p = self.params
        grid = {"figure": p.figure, "function": p.function, "estimator": self.estimator_name,
                "extent": float(p.extent), "resolution": int(p.resolution)}
        if p.figure == "field":
            return gradient_field.measure(self.estimator, grid, self.positions, self.codes)
        return push_pull.measure(self.estimator, grid, self.positions, self.codes, p.step_size)

    def metrics(self) -> dict[str, float]:
        return self.measure().metrics()

    def configure_optimizers(self, training):
        return {}

    def training_step(self, batch, ctx, optimizers):
        return self.metrics()  # nothing to train: the one step records the field

    def evaluate(self, batches) -> dict[str, float]:
        return self.metrics()

    def artifacts(self) -> dict:
        return self.measure().to_json()
