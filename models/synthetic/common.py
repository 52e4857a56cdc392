"""What the synthetic problems share: seeding, the estimator's gradient at a given code, typed artifacts.

The problems fit the trainer through the family protocol (configure_optimizers, training_step, evaluate,
artifacts); their points are the model's own state, and the `synthetic` dataset only counts the steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

#: Why the synthetic problems refuse an estimator kind (families' `refused_estimators`).
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
    with torch.enable_grad():
        loss, _ = estimator.loss_at_code(e, q.detach(), loss_of)
        (grad,) = torch.autograd.grad(loss, e)
    return grad.detach()


def linear_loss(g: torch.Tensor):
    """z ↦ Σ ⟨g_i, z_i⟩: the gradient is g at every z (and the Hessian is zero)."""
    return lambda z: (z * g).sum()


def tolist(t: torch.Tensor) -> list:
    """A tensor as nested lists of Python floats (float64), for the artifacts' JSON."""
    return t.detach().cpu().double().tolist()


def estimator_name(estimator) -> str:
    return getattr(estimator, "name", type(estimator).__name__)


def check_positive(problems: list[str], **values) -> None:
    """Append "<key> must be positive" to `problems` for each value that is not."""
    for key, value in values.items():
        if not value > 0:
            problems.append(f"{key} must be positive, got {value}")


def synthetic_training(steps: int, lr: float = 1.0) -> dict:
    """Training settings of a synthetic problem: a fixed number of full-batch steps on the CPU."""
    return {"steps": steps, "lr": lr, "schedule": "constant", "warmup_steps": 0, "batch_size": 1,
            "weight_decay": 0.0, "log_every": 1, "checkpoint_every": 50, "device": "cpu",
            "progress_bar": False}


class Artifacts:
    """Base of a problem's typed artifacts (a dataclass of JSON values: numbers, strings, nested lists).

    `to_json()` is what the family's `artifacts()` returns (the run's artifacts.json); `from_json(data)` is
    what harness/figures.py reads back. The JSON is flat: {"problem": ..., field: value, ...}.
    """

    problem: ClassVar[str]

    def to_json(self) -> dict:
        return {"problem": self.problem, **dataclasses.asdict(self)}

    @classmethod
    def describes(cls, data: dict) -> bool:
        """Whether artifacts.json `data` is of this kind (the family's name is the problem's)."""
        return data.get("problem") == cls.problem

    @classmethod
    def from_json(cls, data: dict):
        if not cls.describes(data):
            raise ValueError(f"{cls.__name__}: artifacts of problem {data.get('problem')!r} (figure "
                             f"{data.get('figure')!r}) are not {cls.__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"{cls.__name__}: artifacts lack {', '.join(missing)} (written by an older version?)")
        return cls(**{name: data[name] for name in names})


@dataclass
class GridArtifacts(Artifacts):
    """The part of a ``toy2d_field`` run's artifacts both of its figures share: the grid of codes (cell
    centres) and of encoder outputs e (`positions`), each (M, 2)."""

    problem = "toy2d_field"
    figure_kind: ClassVar[str]
    figure: str
    function: str
    estimator: str
    extent: float
    resolution: int
    codes: list
    positions: list

    @classmethod
    def describes(cls, data: dict) -> bool:
        return super().describes(data) and data.get("figure") == cls.figure_kind
