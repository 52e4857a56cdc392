"""``himmelblau`` (paper A.2, Figure 8): vector-quantised minimisation of Himmelblau's function.

N trainable pre-quantised points, a K-code EMA codebook (decay 0.8, models/quantizer.py) and the objective
f(q̃) = Himmelblau's function at the quantised points, minimised by SGD on the points (lr 1e-3, 100 updates).
The objective is summed over the points, so each point moves by lr·(the estimator's gradient of f at its own
code), as if every point were its own problem; a mean would divide every step by N. The initial points and
codes are drawn from the run seed alone, never from the estimator, so the STE and rotation runs of one seed
start from the same state (A.2: "the same random initialization for both codewords and pre-quantized
vectors"). Snapshots of points and codebook after the `snapshot_steps`-th updates are buffers, so they
survive a checkpoint and resume.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..base import ModelFamily, backward_and_step
from ..code_search import nearest_code
from ..quantizer import VectorQuantizer
from ..registry import register_family
from .common import REFUSED, Artifacts, check_positive, estimator_name, run_generator, synthetic_training, tolist

#: The four minima of Himmelblau's function, f = 0 at each (paper A.2, Figure 7).
HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))
CODEBOOK_INITS = ("points", "uniform")


def himmelblau(z):
    """(x² + y − 11)² + (x + y² − 7)² for points z (..., 2), a torch tensor or a numpy array."""
    x, y = z[..., 0], z[..., 1]
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2


@dataclass
class HimmelblauState:
    """Points and codebook at one moment, and their metrics (`state_metrics`); `step`: updates so far."""

    points: list
    codebook: list
    distortion: float
    quant_error: float
    objective_points: float
    objective_codes: float
    usage: float
    code_to_minimum: float
    step: int | None = None

    def metrics(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("points", "codebook", "step")}

    def to_json(self) -> dict:
        head = {} if self.step is None else {"step": self.step}
        return {**head, "points": self.points, "codebook": self.codebook, **self.metrics()}

    @classmethod
    def from_json(cls, data: dict) -> "HimmelblauState":
        return cls(**data)


@dataclass
class HimmelblauArtifacts(Artifacts):
    """What a run records for Figure 8: the initial, snapshot and final states."""

    problem = "himmelblau"
    estimator: str
    init_range: float
    updates: int
    initial: HimmelblauState
    snapshots: list[HimmelblauState]
    final: HimmelblauState
    minima: list = field(default_factory=lambda: [list(m) for m in HIMMELBLAU_MINIMA])

    def to_json(self) -> dict:
        return {"problem": self.problem, "estimator": self.estimator, "minima": self.minima,
                "init_range": self.init_range, "updates": self.updates, "initial_points": self.initial.points,
                "initial_codebook": self.initial.codebook, "initial": self.initial.metrics(),
                "snapshots": [s.to_json() for s in self.snapshots], "final": self.final.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "HimmelblauArtifacts":
        if not cls.describes(data):
            raise ValueError(f"HimmelblauArtifacts: artifacts of problem {data.get('problem')!r}")
        initial = HimmelblauState(data["initial_points"], data["initial_codebook"], **data["initial"])
        return cls(data["estimator"], data["init_range"], data["updates"], initial,
                   [HimmelblauState.from_json(s) for s in data["snapshots"]],
                   HimmelblauState.from_json(data["final"]), data["minima"])


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
    "paper": {"model": {}, "training": synthetic_training(100, lr=1e-3), "source": _A2_SOURCE},
    "cpu": {"model": {}, "training": synthetic_training(100, lr=1e-3), "source": "same as paper: " + _A2_SOURCE},
}


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


def _state(points: torch.Tensor, codebook: torch.Tensor, step: int | None = None) -> HimmelblauState:
    return HimmelblauState(tolist(points), tolist(codebook), **state_metrics(points, codebook), step=step)


@register_family
class Himmelblau(ModelFamily):
    """Vector-quantised minimisation of Himmelblau's function over trainable 2-D points (paper A.2)."""

    family_name = "himmelblau"
    Params = HimmelblauParams
    presets = HIMMELBLAU_PRESETS
    data_kind = None  # owns its points (drawn from the run seed): no dataset
    refused_estimators = REFUSED

    def __init__(self, params: HimmelblauParams, estimator):
        super().__init__()
        self.params = params
        self.estimator_name = estimator_name(estimator)
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
        check_positive(problems, num_points=params.num_points, num_codes=params.num_codes,
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

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        metrics = state_metrics(self.points.detach(), self.quantizer.embedding)
        return {f"val_{key}": value for key, value in metrics.items()}

    @torch.no_grad()
    def artifacts(self) -> dict:
        snapshots = [_state(self.snapshot_points[i], self.snapshot_codebook[i], step=int(self.snapshot_at[i]))
                     for i in range(len(self.snapshot_at)) if bool(self.snapshot_taken[i])]
        return HimmelblauArtifacts(
            estimator=self.estimator_name, init_range=float(self.params.init_range), updates=int(self.updates),
            initial=_state(self.initial_points, self.initial_codebook), snapshots=snapshots,
            final=_state(self.points.detach(), self.quantizer.embedding)).to_json()
