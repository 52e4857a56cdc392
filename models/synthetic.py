"""Synthetic 2-D problems as model families (data kind "points"), run through the same suite/store/report
path as the autoencoders. Each family owns its points; the `synthetic` dataset only counts the steps.

* ``himmelblau`` (paper A.2, Figure 8): N trainable pre-quantised points, a K-code EMA codebook (decay 0.8,
  models/quantizer.py) and the objective f(q̃) = Himmelblau's function at the quantised points, minimised by
  SGD on the points (lr 1e-3, 100 updates). The objective is summed over the points, so each point moves by
  lr·(the estimator's gradient of f at its own code), as if every point were its own problem; a mean would
  divide every step by N. The initial points and codes are drawn from the run seed alone, never from the
  estimator, so the STE and rotation runs of one seed start from the same state (A.2: "the same random
  initialization for both codewords and pre-quantized vectors"). Snapshots of points and codebook after the
  `snapshot_steps`-th updates are buffers, so they survive a checkpoint and resume.
* ``points_shift`` (paper A.4, Figure 10 = Figure 4 shifted by +10 per dimension): Figure 4's setup, three
  clusters of points in each of K Voronoi cells (one around the code, two near the cell's boundary), every
  point and code shifted by ``shift`` per dimension. One step: each cell's code receives the update u_c
  (along q for the upper cells, against q for the lower ones, as in Figure 4's top and bottom partitions)
  and each point the estimator's update. Records the estimator's update against the STE's (which is u_c for
  every point of the cell) and their mean cosine: far from the origin the rotation tends to the identity
  and λ to 1, so the cosine tends to 1 (A.4).
* ``toy2d_field`` (paper §3 Figure 2 and §4.3 Figures 4-5), a codes_per_side² grid of codes in
  [-extent, extent]², evaluated on a grid of encoder outputs e. ``figure: field``: the gradient field at e of
  f = x² + y² (``quadratic``) or log|x/2 + tanh y| (``log_tanh``) as the estimator transports it, next to the
  exact ∇f(e); the STE copies ∇f(q) to the whole cell (the checkerboard). ``figure: push_pull``: every code
  takes a step of length ``step_size`` along q̂ ("along") or against it ("against"); each e takes the
  estimator's step; the change of ‖e − q‖ after both steps is 0 for the STE, > 0 (pushed away) for points at
  a large angle to q when the step points along q, < 0 (pulled in) when it points against q (Figure 5). Here
  "along/against" is the direction of the update −η∇_qL relative to q, the reading under which the paper's
  text (push for φ < π/2, pull for φ > π/2) holds.

Estimators: transport estimators use ``transport(e, q)``; decoder-aware ones (exact gradients, Hessian
approximation) get the objective as ``loss_of`` (for the exact estimator this is ∇f(e)); sampling estimators
are refused (they replace the hard assignment, which these problems are about).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import ModelFamily, backward_and_step
from .code_search import nearest_code
from .quantizer import VectorQuantizer
from .registry import register_family

#: The four minima of Himmelblau's function, f = 0 at each (paper A.2, Figure 7).
HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))


def himmelblau(z: torch.Tensor) -> torch.Tensor:
    """(x² + y − 11)² + (x + y² − 7)² for points z (..., 2)."""
    x, y = z[..., 0], z[..., 1]
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2


def quadratic(z: torch.Tensor) -> torch.Tensor:
    """x² + y² (Figure 2, top)."""
    return (z * z).sum(-1)


def log_tanh(z: torch.Tensor) -> torch.Tensor:
    """log|x/2 + tanh(y)| (Figure 2, bottom); |·| floored at 1e-12 on the curve where it is −∞."""
    return torch.log((0.5 * z[..., 0] + torch.tanh(z[..., 1])).abs().clamp_min(1e-12))


FUNCTIONS = {"himmelblau": himmelblau, "quadratic": quadratic, "log_tanh": log_tanh}
REFUSED = {"sampling": "sampling estimators replace the hard assignment that the synthetic problems study"}


def run_generator(init_seed: int | None) -> torch.Generator:
    """A CPU generator seeded by `init_seed`, or by the run seed: the harness calls torch.manual_seed(seed)
    before it builds the model and torch.initial_seed() reads that seed back, so the draw does not depend on
    what consumed random numbers in between (nor on the estimator)."""
    seed = torch.initial_seed() if init_seed is None else int(init_seed)
    return torch.Generator().manual_seed(seed % 2**63)


def estimator_gradient(estimator, e: torch.Tensor, q: torch.Tensor, loss_of) -> torch.Tensor:
    """∇_e of `loss_of(decoder input)` as `estimator` propagates it through the quantization e → q."""
    e = e.detach().clone().requires_grad_(True)
    q = q.detach()
    with torch.enable_grad():
        if estimator.kind == "transport":
            loss = loss_of(estimator.transport(e, q))
        elif estimator.kind == "decoder_aware":
            loss, _ = estimator.decoder_loss(e, q, loss_of)
        else:
            raise ValueError(f"estimator {estimator.name!r} ({estimator.kind}) is not supported here")
        (grad,) = torch.autograd.grad(loss, e)
    return grad.detach()


def _linear_loss(g: torch.Tensor):
    """z ↦ Σ ⟨g_i, z_i⟩: the gradient is g at every z (and the Hessian is zero)."""
    return lambda z: (z * g).sum()


def _tolist(t: torch.Tensor) -> list:
    return t.detach().cpu().double().tolist()


def _estimator_name(estimator) -> str:
    return getattr(estimator, "name", type(estimator).__name__)


def _check_positive(problems: list[str], **values) -> None:
    for key, value in values.items():
        if not value > 0:
            problems.append(f"{key} must be positive, got {value}")


def _synthetic_training(steps: int, lr: float = 1.0) -> dict:
    """Training settings of a synthetic problem: a fixed number of full-batch steps on the CPU."""
    return {"steps": steps, "lr": lr, "schedule": "constant", "warmup_steps": 0, "batch_size": 1,
            "weight_decay": 0.0, "log_every": 1, "checkpoint_every": 50, "device": "cpu",
            "progress_bar": False}


# ---------------------------------------------------------------------------------------------------------
# himmelblau (A.2, Figure 8)
# ---------------------------------------------------------------------------------------------------------

CODEBOOK_INITS = ("points", "uniform")


@dataclass
class HimmelblauParams:
    """himmelblau: num_points pre-quantised points uniform in [-init_range, init_range]², num_codes codes
    (codebook_init "points": distinct initial points; "uniform": uniform in the same square), EMA decay,
    commitment weight beta (per point, β‖e − sg(q)‖²; the paper's simulation has none), the update counts
    at which points and codebook are snapshot, and init_seed (None: the run seed)."""

    num_points: int = 256
    num_codes: int = 16
    init_range: float = 5.0
    codebook_init: str = "points"
    ema_decay: float = 0.8
    beta: float = 0.0
    snapshot_steps: list = field(default_factory=lambda: [33, 66, 100])
    init_seed: int | None = None


_A2_SOURCE = ("paper A.2: 100 updates, EMA decay 0.8, lr 1e-3 on the pre-quantised points, same initialisation "
              "for STE and rotation; the numbers of points and codes and the initial distribution are not stated "
              "(this harness: 256 points uniform in [-5, 5]², 16 codes started at distinct initial points)")
HIMMELBLAU_PRESETS = {
    "paper": {"model": {}, "training": _synthetic_training(100, lr=1e-3), "source": _A2_SOURCE},
    "cpu": {"model": {}, "training": _synthetic_training(100, lr=1e-3), "source": "same as paper: " + _A2_SOURCE},
}


@register_family
class Himmelblau(ModelFamily):
    """Vector-quantised minimisation of Himmelblau's function over trainable 2-D points (paper A.2)."""

    family_name = "himmelblau"
    Params = HimmelblauParams
    presets = HIMMELBLAU_PRESETS
    data_kind = "points"
    refused_estimators = REFUSED

    def __init__(self, params: HimmelblauParams, estimator):
        super().__init__()
        self.params = params
        self.estimator_name = _estimator_name(estimator)
        generator = run_generator(params.init_seed)
        n, k, r = params.num_points, params.num_codes, float(params.init_range)
        points = (torch.rand(n, 2, generator=generator) * 2.0 - 1.0) * r
        if params.codebook_init == "points":
            codes = points[torch.randperm(n, generator=generator)[:k]].clone()
        else:
            codes = (torch.rand(k, 2, generator=generator) * 2.0 - 1.0) * r
        self.points = nn.Parameter(points)
        self.quantizer = VectorQuantizer(k, 2, estimator, codebook_learning="ema", ema_decay=params.ema_decay,
                                         beta=0.0)
        with torch.no_grad():
            self.quantizer.embedding.copy_(codes)
            self.quantizer.embed_sum.copy_(codes)
            self.quantizer.cluster_size.fill_(1.0)
        steps = [int(s) for s in params.snapshot_steps]
        self.register_buffer("initial_points", points.clone())
        self.register_buffer("initial_codebook", codes.clone())
        self.register_buffer("snapshot_at", torch.tensor(steps, dtype=torch.long))
        self.register_buffer("snapshot_points", torch.zeros(len(steps), n, 2))
        self.register_buffer("snapshot_codebook", torch.zeros(len(steps), k, 2))
        self.register_buffer("snapshot_taken", torch.zeros(len(steps), dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems: list[str] = []
        _check_positive(problems, num_points=params.num_points, num_codes=params.num_codes,
                        init_range=params.init_range)
        if params.codebook_init not in CODEBOOK_INITS:
            problems.append(f"codebook_init {params.codebook_init!r} is not one of {', '.join(CODEBOOK_INITS)}")
        elif params.codebook_init == "points" and params.num_codes > params.num_points:
            problems.append(f"codebook_init 'points' needs num_codes ({params.num_codes}) <= num_points "
                            f"({params.num_points})")
        if not 0.0 <= params.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {params.ema_decay}")
        if params.beta < 0:
            problems.append(f"beta must be non-negative, got {params.beta}")
        steps = params.snapshot_steps
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps):
            problems.append(f"snapshot_steps must be positive integers, got {steps!r}")
        return problems

    def configure_optimizers(self, training):
        return {"points": torch.optim.SGD([self.points], lr=training.lr)}

    def training_step(self, batch, ctx, optimizers):
        out = self.quantizer(self.points)  # EMA update of the codebook from the points before this step
        backward_loss, objective = out.reconstruction_loss(lambda z: himmelblau(z).sum())
        loss = backward_loss
        if self.params.beta:
            loss = loss + self.params.beta * ((out.e - out.q) ** 2).sum()
        backward_and_step(loss, optimizers["points"], ctx.grad_clip)
        with torch.no_grad():
            self.updates += 1
            taken = self.snapshot_at == self.updates
            if bool(taken.any()):
                self.snapshot_points[taken] = self.points.detach()
                self.snapshot_codebook[taken] = self.quantizer.embedding
                self.snapshot_taken |= taken
        stats = out.statistics()
        return {"loss": float(objective.detach()) / self.params.num_points,
                "distortion": float(((out.e.detach() - out.q) ** 2).sum(-1).mean()),
                "quant_error": stats["quant_error"], "usage_batch": stats["usage_batch"]}

    @staticmethod
    def state_metrics(points: torch.Tensor, codebook: torch.Tensor) -> dict[str, float]:
        """Distortion, objective at points and at their codes, usage, distance of used codes to a minimum."""
        indices = nearest_code(points, codebook)
        q = codebook[indices]
        used = torch.unique(indices)
        minima = torch.tensor(HIMMELBLAU_MINIMA, dtype=points.dtype, device=points.device)
        to_minimum = torch.cdist(codebook[used], minima).min(-1).values
        distortion = float(((points - q) ** 2).sum(-1).mean())
        return {"distortion": distortion, "quant_error": distortion / points.shape[-1],
                "objective_points": float(himmelblau(points).mean()),
                "objective_codes": float(himmelblau(q).mean()),
                "usage": float(used.numel() / codebook.shape[0]),
                "code_to_minimum": float(to_minimum.mean())}

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        metrics = self.state_metrics(self.points.detach(), self.quantizer.embedding)
        return {f"val_{key}": value for key, value in metrics.items()}

    @torch.no_grad()
    def artifacts(self) -> dict:
        snapshots = []
        for i in range(len(self.snapshot_at)):
            if bool(self.snapshot_taken[i]):
                points, codebook = self.snapshot_points[i], self.snapshot_codebook[i]
                snapshots.append({"step": int(self.snapshot_at[i]), "points": _tolist(points),
                                  "codebook": _tolist(codebook), **self.state_metrics(points, codebook)})
        return {
            "problem": "himmelblau", "estimator": self.estimator_name, "minima": [list(m) for m in HIMMELBLAU_MINIMA],
            "init_range": float(self.params.init_range), "updates": int(self.updates),
            "initial_points": _tolist(self.initial_points), "initial_codebook": _tolist(self.initial_codebook),
            "initial": self.state_metrics(self.initial_points, self.initial_codebook),
            "snapshots": snapshots,
            "final": {"points": _tolist(self.points), "codebook": _tolist(self.quantizer.embedding),
                      **self.state_metrics(self.points.detach(), self.quantizer.embedding)},
        }


# ---------------------------------------------------------------------------------------------------------
# points_shift (A.4, Figures 4 and 10)
# ---------------------------------------------------------------------------------------------------------

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
    "paper": {"model": {"shift": 10.0}, "training": _synthetic_training(1), "source": _A4_SOURCE},
    "cpu": {"model": {"shift": 10.0}, "training": _synthetic_training(1), "source": "same as paper: " + _A4_SOURCE},
}


def _within_cell_distance(points: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    same = indices[:, None] == indices[None, :]
    same.fill_diagonal_(False)
    return torch.cdist(points, points)[same].mean()


@register_family
class PointsShift(ModelFamily):
    """Figure 4's points and one update, shifted away from the origin by `shift` per dimension (paper A.4)."""

    family_name = "points_shift"
    Params = PointsShiftParams
    presets = POINTS_SHIFT_PRESETS
    data_kind = "points"
    refused_estimators = REFUSED

    def __init__(self, params: PointsShiftParams, estimator):
        super().__init__()
        self.params = params
        self.estimator = estimator
        self.estimator_name = _estimator_name(estimator)
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
        _check_positive(problems, num_codes=params.num_codes, code_radius=params.code_radius,
                        points_per_cluster=params.points_per_cluster, step_size=params.step_size)
        if params.cluster_spread < 0:
            problems.append(f"cluster_spread must be non-negative, got {params.cluster_spread}")
        return problems

    def updates(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Assignments and the STE's and the estimator's updates of `points` (−∇ with the code's step)."""
        indices = nearest_code(points, self.codes)
        q = self.codes[indices]
        ste = self.params.step_size * self.directions[indices]  # the code's update, copied by the STE
        estimator = -estimator_gradient(self.estimator, points, q, _linear_loss(-ste))
        cosine = F.cosine_similarity(estimator, ste, dim=-1)
        return {"indices": indices, "ste": ste, "estimator": estimator, "cosine": cosine,
                "norm_ratio": estimator.norm(dim=-1) / ste.norm(dim=-1)}

    def metrics(self) -> dict[str, float]:
        u = self.updates(self.initial_points)
        before = _within_cell_distance(self.initial_points, u["indices"])
        after = _within_cell_distance(self.initial_points + u["estimator"], u["indices"])
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
        return {"problem": "points_shift", "estimator": self.estimator_name, "shift": float(self.params.shift),
                "codes": _tolist(self.codes), "code_updates": _tolist(self.params.step_size * self.directions),
                "points": _tolist(self.initial_points), "assignments": u["indices"].tolist(),
                "ste_updates": _tolist(u["ste"]), "estimator_updates": _tolist(u["estimator"]),
                "cosine": _tolist(u["cosine"]), "updated_points": _tolist(self.points), **self.metrics()}


# ---------------------------------------------------------------------------------------------------------
# toy2d_field (§3 Figure 2; §4.3 Figures 4-5)
# ---------------------------------------------------------------------------------------------------------

FIGURE_KINDS = ("field", "push_pull")
PUSH_PULL_DIRECTIONS = ("along", "against")


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


_FIG2_SOURCE = ("paper §3 Figure 2 (16 codes, f = x² + y² and log|x/2 + tanh y|) and §4.3 Figures 4-5; the "
                "domain and grid are this harness's choice (the paper gives none)")
TOY2D_PRESETS = {
    "paper": {"model": {}, "training": _synthetic_training(1), "source": _FIG2_SOURCE},
    "cpu": {"model": {}, "training": _synthetic_training(1), "source": "same as paper: " + _FIG2_SOURCE},
}


def _centred_grid(count: int, extent: float) -> torch.Tensor:
    return (torch.arange(count, dtype=torch.float32) + 0.5) / count * 2.0 * extent - extent


@register_family
class Toy2DField(ModelFamily):
    """The STE's checkerboard gradient field vs the rotation trick's (Figure 2), and push/pull (Figure 5)."""

    family_name = "toy2d_field"
    Params = Toy2DFieldParams
    presets = TOY2D_PRESETS
    data_kind = "points"
    refused_estimators = REFUSED

    def __init__(self, params: Toy2DFieldParams, estimator):
        super().__init__()
        self.params = params
        self.estimator = estimator
        self.estimator_name = _estimator_name(estimator)
        axis = _centred_grid(params.codes_per_side, params.extent)
        self.register_buffer("codes", torch.cartesian_prod(axis, axis).flip(-1).contiguous())  # (x, y), row-major in y
        fine = _centred_grid(params.resolution, params.extent)
        self.register_buffer("positions", torch.cartesian_prod(fine, fine).flip(-1).contiguous())

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems: list[str] = []
        if params.figure not in FIGURE_KINDS:
            problems.append(f"figure {params.figure!r} is not one of {', '.join(FIGURE_KINDS)}")
        if params.function not in ("quadratic", "log_tanh"):
            problems.append(f"function {params.function!r} is not one of quadratic, log_tanh")
        _check_positive(problems, codes_per_side=params.codes_per_side, extent=params.extent,
                        resolution=params.resolution, step_size=params.step_size)
        return problems

    def _cells(self):
        indices = nearest_code(self.positions, self.codes)
        return indices, self.codes[indices]

    def field(self) -> dict[str, torch.Tensor]:
        """Exact ∇f(e), the STE's ∇f(q) and the estimator's gradient at every position e."""
        function = FUNCTIONS[self.params.function]
        indices, q = self._cells()
        e = self.positions.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (exact,) = torch.autograd.grad(function(e).sum(), e)
            qq = q.detach().clone().requires_grad_(True)
            (at_code,) = torch.autograd.grad(function(qq).sum(), qq)
        estimator = estimator_gradient(self.estimator, self.positions, q, lambda z: function(z).sum())
        return {"indices": indices, "exact": exact.detach(), "ste": at_code.detach(), "estimator": estimator}

    def push_pull(self) -> dict[str, torch.Tensor]:
        """Change of ‖e − q‖ after one step of e (estimator) and of q (step_size along ±q̂), per direction."""
        indices, q = self._cells()
        out = {"indices": indices}
        for name, sign in (("along", 1.0), ("against", -1.0)):
            code_step = sign * self.params.step_size * F.normalize(q, dim=-1)
            e_step = -estimator_gradient(self.estimator, self.positions, q, _linear_loss(-code_step))
            before = (self.positions - q).norm(dim=-1)
            after = (self.positions + e_step - (q + code_step)).norm(dim=-1)
            out[f"{name}_change"] = after - before
            out[f"{name}_step"] = e_step
        return out

    def metrics(self) -> dict[str, float]:
        if self.params.figure == "field":
            f = self.field()
            cosine = F.cosine_similarity(f["estimator"], f["exact"], dim=-1)
            spread, scale = [], f["estimator"].norm(dim=-1).mean().clamp_min(1e-12)
            for k in torch.unique(f["indices"]):
                cell = f["estimator"][f["indices"] == k]
                spread.append((cell - cell.mean(0)).norm(dim=-1).mean())
            return {"field_cosine_exact": float(cosine.mean()),
                    "field_within_cell_spread": float(torch.stack(spread).mean() / scale)}
        p = self.push_pull()
        step = self.params.step_size
        indices, q = self._cells()
        angle = torch.acos(F.cosine_similarity(self.positions, q, dim=-1).clamp(-1.0, 1.0))
        wide = angle > angle.median()  # the half of the positions at the larger angle to their code
        metrics = {}
        for name in PUSH_PULL_DIRECTIONS:
            change = p[f"{name}_change"] / step
            metrics[f"distance_change_{name}"] = float(change.mean())
            metrics[f"distance_change_{name}_wide"] = float(change[wide].mean())
            metrics[f"distance_change_{name}_narrow"] = float(change[~wide].mean())
            metrics[f"pushed_fraction_{name}"] = float((change > 1e-6).float().mean())
            metrics[f"pulled_fraction_{name}"] = float((change < -1e-6).float().mean())
        return metrics

    def configure_optimizers(self, training):
        return {}

    def training_step(self, batch, ctx, optimizers):
        return self.metrics()  # nothing to train: the one step records the field

    def evaluate(self, batches) -> dict[str, float]:
        return self.metrics()

    def artifacts(self) -> dict:
        base = {"problem": "toy2d_field", "figure": self.params.figure, "function": self.params.function,
                "estimator": self.estimator_name, "extent": float(self.params.extent),
                "resolution": int(self.params.resolution), "codes": _tolist(self.codes),
                "positions": _tolist(self.positions), **self.metrics()}
        if self.params.figure == "field":
            f = self.field()
            return {**base, "assignments": f["indices"].tolist(), "exact_field": _tolist(f["exact"]),
                    "ste_field": _tolist(f["ste"]), "estimator_field": _tolist(f["estimator"])}
        p = self.push_pull()
        return {**base, "assignments": p["indices"].tolist(), "step_size": float(self.params.step_size),
                **{key: _tolist(value) for key, value in p.items() if key != "indices"}}
