"""Synthetic 2-D problems as model families (they own their points and read no dataset), run through the same suite/store/report
path as the autoencoders, one module per problem:

* himmelblau.py: ``himmelblau`` (paper A.2, Figure 8), vector-quantised minimisation of Himmelblau's function;
* shift_cosine.py: ``points_shift`` (A.4, Figures 4 and 10), the rotation trick tends to the STE far from the
  origin;
* toy2d.py: ``toy2d_field``, a grid of codes for gradient_field.py (§3, Figure 2: the STE's checkerboard) and
  push_pull.py (§4.3, Figures 4-5: push and pull within cells).

Each family owns its points; the ``synthetic`` dataset only counts the steps. Each problem's `artifacts()` is
a typed dataclass (``*Artifacts``, with to_json/from_json) that harness/figures.py reads back for its figure.
Estimators: transport and decoder-aware ones through `Estimator.loss_at_code` (for the exact estimator this is
∇f(e)); sampling estimators are refused (they replace the hard assignment, which these problems are about).
"""
from .gradient_field import GradientFieldArtifacts
from .himmelblau import HIMMELBLAU_MINIMA, Himmelblau, HimmelblauArtifacts, HimmelblauParams, himmelblau
from .push_pull import PushPullArtifacts
from .shift_cosine import PointsShift, PointsShiftParams, ShiftCosineArtifacts
from .toy2d import Toy2DField, Toy2DFieldParams

__all__ = [
    "HIMMELBLAU_MINIMA",
    "GradientFieldArtifacts",
    "Himmelblau",
    "HimmelblauArtifacts",
    "HimmelblauParams",
    "PointsShift",
    "PointsShiftParams",
    "PushPullArtifacts",
    "ShiftCosineArtifacts",
    "Toy2DField",
    "Toy2DFieldParams",
    "himmelblau",
]
