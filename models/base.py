"""What a model family is: it builds itself from a params dataclass and an
estimator, owns its objective and optimisers, and evaluates itself. The harness's training loop only calls
`configure_optimizers`, `training_step`, `set_progress` and `evaluate`, so families with a discriminator
(VQGAN) or without a network at all (synthetic problems) need no special case in the harness.

`VQAutoencoder` is the common shape encoder → VectorQuantizer → decoder with a reconstruction objective
that the estimator sees through `QuantizerOutput.reconstruction_loss` (paper §3-§4).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F

from .collectives import all_reduce_sum, average_gradients, deferred_ema_updates, global_mean
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer, lfq_problems
from .quantizer import CODEBOOK_LEARNING, LOOKUPS, NOT_REPLACEABLE, REPARAMETERIZATIONS, QuantizerOutput, VectorQuantizer

#: `model.quantizer`: the nearest-code VQ of the paper, or a codebook-free baseline (FSQ, LFQ)
QUANTIZERS = ("vq", "fsq", "lfq")


@dataclass
class StepContext:
    """What the trainer tells a family at each step."""

    step: int
    total_steps: int
    grad_clip: float | None = None
    autocast: Callable[[], ContextManager] = nullcontext
    #: micro-batches per step (training.accumulate): gradients are summed over them, the EMA codebook is
    #: updated once per step from all of them
    accumulate: int = 1


@dataclass
class QuantizerParams:
    """Quantizer settings every VQ family shares (models/quantizer.py)."""

    num_codes: int = 256
    latent_dim: int = 32
    lookup: str = "euclidean"
    codebook_learning: str = "ema"
    ema_decay: float = 0.8
    beta: float = 1.0
    factorized_dim: int | None = None
    init_std: float = 1.0
    #: "vq" (the paper's), or a codebook-free baseline: "fsq" (levels `fsq_levels`) or "lfq" (2^b = num_codes)
    quantizer: str = "vq"
    #: vq: "none", "affine", "affine_running" or "simvq" (models/quantizer.py's docstring)
    reparameterization: str = "none"
    #: vq: replace a code unused for this many training steps by a recent encoder output; null: never
    dead_code_window: int | None = None
    #: fsq: levels per projected dimension (the implied codebook has their product of codes)
    fsq_levels: list = field(default_factory=lambda: [8, 5, 5, 5])
    #: lfq: weight of the entropy term (MAGVIT-v2); its commitment weight is `beta`
    lfq_entropy_weight: float = 0.1


def make_quantizer(params: QuantizerParams, estimator) -> nn.Module:
    """The quantizer `params.quantizer` names: a VectorQuantizer, or FSQ/LFQ (which use the STE only)."""
    if params.quantizer != "vq":
        name = estimator if isinstance(estimator, str) else estimator.name
        if name != "ste":
            raise ValueError(f"quantizer {params.quantizer!r} is codebook-free: its gradient is the "
                             f"straight-through one; use estimator ste, not {name!r}")
    if params.quantizer == "fsq":
        return FiniteScalarQuantizer(params.latent_dim, params.fsq_levels)
    if params.quantizer == "lfq":
        return LookupFreeQuantizer(params.latent_dim, params.num_codes, params.beta, params.lfq_entropy_weight)
    return VectorQuantizer(
        num_codes=params.num_codes, dim=params.latent_dim, estimator=estimator, lookup=params.lookup,
        codebook_learning=params.codebook_learning, ema_decay=params.ema_decay, beta=params.beta,
        factorized_dim=params.factorized_dim, init_std=params.init_std,
        reparameterization=params.reparameterization, dead_code_window=params.dead_code_window,
    )


@dataclass
class TrainingDefaults:
    """Optimiser settings a preset may state (paper Tables 8-11); the suite can override each."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.99)


class ModelFamily(nn.Module):
    """Base class of every family; subclasses set the class attributes and implement the methods."""

    family_name: ClassVar[str] = "?"
    Params: ClassVar[type] = QuantizerParams
    #: preset name -> {"model": {...}, "training": {...}, "source": "where the numbers come from"}
    presets: ClassVar[dict[str, dict]] = {}
    #: "image" (3, H, W), "video" (3, T, H, W), or None for a family that owns its inputs and reads no
    #: dataset (the synthetic problems: the trainer then passes batch None and evaluates on no batches)
    data_kind: ClassVar[str | None] = "image"
    #: estimator name or kind -> why this family cannot use it (checked when a suite is loaded)
    refused_estimators: ClassVar[dict[str, str]] = {}
    #: the networks (attribute names) `training.compile` compiles; None-valued attributes are skipped
    compiled_modules: ClassVar[tuple[str, ...]] = ()
    #: whether the family is convolutional over images, so the trainer uses the channels-last memory format
    #: for it (and its input batches) on GPUs
    channels_last: ClassVar[bool] = False

    @classmethod
    def refusal(cls, estimator_name: str, estimator_kind: str) -> str | None:
        return cls.refused_estimators.get(estimator_name) or cls.refused_estimators.get(estimator_kind)

    @classmethod
    def estimator_problems(cls, params, estimator_class) -> list[str]:
        """Why this family's `params` cannot be used with the estimator class (checked when a suite loads):
        combinations that make no sense, beyond `refused_estimators`. Each message gives the fix."""
        name = estimator_class.name
        if not isinstance(params, QuantizerParams):
            if estimator_class.chooses_codes or estimator_class.codebook_gradient:
                return [f"{name!r} learns the codebook through the decoder or chooses its own codes; this problem "
                        f"studies the gradient at a given code of a fixed or EMA codebook"]
            return []
        if params.quantizer != "vq":
            if name != "ste":
                return [f"quantizer {params.quantizer!r} is codebook-free: there is no code to rotate towards or "
                        f"codebook to learn, and its rounding's gradient is the straight-through one; use "
                        f"estimator ste"]
            return []
        codebook_learning = estimator_class.codebook_learning or params.codebook_learning
        if estimator_class.codebook_gradient and codebook_learning == "ema":
            return [f"{name!r} sends the decoder's gradient to the codebook, which the EMA update would "
                    f"overwrite; set model.codebook_learning: loss"]
        if params.reparameterization != "none" and codebook_learning == "ema":
            return [f"reparameterization {params.reparameterization!r} learns the codebook by a gradient, which "
                    f"the EMA update would overwrite; set model.codebook_learning: loss"]
        return []

    @classmethod
    def check_params(cls, params) -> list[str]:
        """Impossible combinations of params (beyond types), as messages. Subclasses extend."""
        problems = []
        if not isinstance(params, QuantizerParams):
            return problems
        for key, choices in (("lookup", LOOKUPS), ("codebook_learning", CODEBOOK_LEARNING),
                             ("quantizer", QUANTIZERS), ("reparameterization", REPARAMETERIZATIONS)):
            if getattr(params, key) not in choices:
                problems.append(f"{key} {getattr(params, key)!r} is not one of {', '.join(choices)}")
        for key in ("num_codes", "latent_dim", "init_std"):
            if not getattr(params, key) > 0:
                problems.append(f"{key} must be positive, got {getattr(params, key)}")
        if not 0.0 <= params.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {params.ema_decay}")
        if params.beta < 0:
            problems.append(f"beta must be non-negative, got {params.beta}")
        if params.factorized_dim is not None:
            if params.factorized_dim < 1:
                problems.append(f"factorized_dim must be positive, got {params.factorized_dim}")
            elif params.factorized_dim >= params.latent_dim:
                problems.append(f"factorized_dim ({params.factorized_dim}) must be smaller than latent_dim "
                                f"({params.latent_dim})")
        problems += _quantizer_option_problems(params)
        return problems

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1] (sampling estimators anneal their temperature with it)."""
        for module in self.modules():
            if isinstance(module, VectorQuantizer):
                module.progress = float(progress)

    def compile_modules(self) -> list[str]:
        """torch.compile each of `compiled_modules` in place (state_dict keys are unchanged, so checkpoints
        stay interchangeable with uncompiled runs); the names compiled."""
        names = [name for name in self.compiled_modules if getattr(self, name, None) is not None]
        for name in names:
            getattr(self, name).compile()
        return names

    def configure_optimizers(self, training) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(self, batch, ctx: StepContext, optimizers) -> dict[str, torch.Tensor | float]:
        """One optimisation step; its logs as 0-dim tensors (or numbers). Tensors stay on the device: the
        trainer reads them only at its log steps, so a GPU step does not wait for the host."""
        raise NotImplementedError

    def evaluate(self, batches) -> dict[str, float]:
        raise NotImplementedError


def _quantizer_option_problems(params: QuantizerParams) -> list[str]:
    """Impossible combinations of the quantizer options beyond the paper (README "Quantizer options")."""
    problems = []
    if params.dead_code_window is not None and params.dead_code_window < 1:
        problems.append(f"dead_code_window must be a positive number of steps (or null), got "
                        f"{params.dead_code_window}")
    if params.dead_code_window is not None and params.reparameterization in NOT_REPLACEABLE:
        problems.append(f"dead_code_window cannot be used with reparameterization {params.reparameterization!r}: "
                        f"its codes share one map, so a replaced code cannot be written back; use "
                        f"reparameterization none or affine")
    if params.quantizer == "vq":
        return problems
    for key, default in (("reparameterization", "none"), ("dead_code_window", None), ("factorized_dim", None)):
        if getattr(params, key) != default:
            problems.append(f"{key} is an option of the vq quantizer; quantizer {params.quantizer!r} is "
                            f"codebook-free: remove {key}")
    if params.quantizer == "fsq" and (not isinstance(params.fsq_levels, list) or not params.fsq_levels
                                      or any(not isinstance(v, int) or v < 2 for v in params.fsq_levels)):
        problems.append(f"fsq_levels must be a non-empty list of integers >= 2, got {params.fsq_levels!r}")
    if params.quantizer == "lfq":
        problems += lfq_problems(params.num_codes)
    return problems


def adamw(parameters, training) -> torch.optim.AdamW:
    """AdamW with the training section's lr, betas and weight decay (the paper's optimiser, Table 8-11)."""
    return torch.optim.AdamW(parameters, lr=training.lr, betas=tuple(training.betas),
                             weight_decay=training.weight_decay)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """One optimiser step: zero, backward, then `optimizer_step`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer_step(optimizer, grad_clip)


def optimizer_step(optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """Gradients averaged over the ranks under data parallelism (models/collectives.py; nothing to do in a
    single process), optional gradient-norm clipping of the global gradient, step."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    average_gradients(params)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def micro_batches(batch: torch.Tensor, accumulate: int):
    """The step's batch as `accumulate` equal micro-batches (the config makes the batch divisible)."""
    return batch.chunk(accumulate) if accumulate > 1 else (batch,)


def backward(loss: torch.Tensor, accumulate: int) -> None:
    """Add the gradient of one micro-batch's loss, scaled so the step's gradient is that of the mean loss
    over its micro-batches."""
    (loss / accumulate if accumulate > 1 else loss).backward()


def merged_statistics(outputs: list[QuantizerOutput]) -> dict[str, torch.Tensor]:
    """Codebook statistics (usage, perplexity, quantization error) of the step's micro-batches together:
    those of the whole batch, as one quantizer call would give."""
    if len(outputs) == 1:
        return outputs[0].statistics()
    merged = replace(outputs[0], indices=torch.cat([o.indices for o in outputs]),
                     e=torch.cat([o.e for o in outputs]), q=torch.cat([o.q for o in outputs]))
    return merged.statistics()


def mean_logs(parts: list[dict]) -> dict:
    """The mean of each log over the step's micro-batches (equal sizes: the mean over the batch)."""
    if len(parts) == 1:
        return parts[0]
    return {key: sum(part[key] for part in parts) / len(parts) for key in parts[0]}


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB for images in [-1, 1] (peak-to-peak range 2), averaged over the batch."""
    mse = ((x_hat.clamp(-1, 1) - x) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return (10.0 * torch.log10(4.0 / mse)).mean()


class VQAutoencoder(ModelFamily):
    """encoder → quantizer → decoder, objective = reconstruction + quantizer auxiliary losses."""

    compiled_modules = ("encoder", "decoder")

    def __init__(self, params, estimator, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.params = params
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = make_quantizer(params, estimator)

    # -- the pieces the gradient diagnostics use --------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The objective as a function of the reconstruction: MSE (the paper's VQ-VAE, §5.1)."""
        return F.mse_loss(x_hat.float(), x.float())

    def validation_losses(self, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
        """Per-batch validation losses; val_rec_loss is the MSE (paper §5.1's reconstruction loss) whatever the objective."""
        return {"val_rec_loss": float(F.mse_loss(x_hat.float(), x.float()))}

    def forward(self, x: torch.Tensor):
        out = self.quantizer(self.encode(x))
        return self.decode(out.decoder_input), out

    # -- training ---------------------------------------------------------------------------------------
    def autoencoder_terms(self, x: torch.Tensor):
        """(loss to backpropagate, its loss logs, the quantizer output) of one batch; the estimator decides
        how the decoder is run."""
        out = self.quantizer(self.encode(x))
        backward_loss, rec = out.reconstruction_loss(lambda z: self.reconstruction_loss(x, self.decode(z)))
        return backward_loss + out.aux_loss, {"rec_loss": rec.detach(), "aux_loss": out.aux_loss.detach()}, out

    def autoencoder_loss(self, x: torch.Tensor):
        """(loss to backpropagate, logs with the codebook statistics) of one batch."""
        loss, logs, out = self.autoencoder_terms(x)
        return loss, {**logs, **out.statistics()}

    def configure_optimizers(self, training):
        return {"autoencoder": adamw(self.parameters(), training)}

    def training_step(self, batch, ctx, optimizers):
        """One step over `ctx.accumulate` micro-batches of `batch` (this rank's slice of the step's batch)."""
        optimizer = optimizers["autoencoder"]
        optimizer.zero_grad(set_to_none=True)
        parts, outputs = [], []
        with deferred_ema_updates(self, ctx.accumulate > 1):
            for x in micro_batches(batch, ctx.accumulate):
                with ctx.autocast():
                    loss, logs, out = self.autoencoder_terms(x)
                backward(loss, ctx.accumulate)
                parts.append({**logs, "loss": loss.detach()})
                outputs.append(out)
        optimizer_step(optimizer, ctx.grad_clip)
        logs = mean_logs(parts)
        loss = logs.pop("loss")
        return {**logs, **merged_statistics(outputs), "loss": loss}

    # -- evaluation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        """Validation metrics over an iterable of batches (README "Metrics" gives each definition). Under data
        parallelism each rank gets its slice of every batch and the metrics are those of the whole batches:
        per-sample means weighted by the slices' sizes, codebook statistics over the ranks' codes."""
        totals = {"val_psnr": 0.0, "val_quant_error": 0.0, "val_usage_batch": 0.0}
        counts = torch.zeros(self.quantizer.num_codes)
        n_batches = 0
        for x in batches:
            x_hat, out = self(x)
            stats = out.statistics()
            means = global_mean({**self.validation_losses(x, x_hat), "val_psnr": psnr(x.float(), x_hat.float())},
                                len(x))
            for key, value in means.items():
                totals[key] = totals.get(key, 0.0) + value
            totals["val_quant_error"] += float(stats["quant_error"])
            totals["val_usage_batch"] += float(stats["usage_batch"])
            counts += torch.bincount(out.indices.reshape(-1).cpu(), minlength=self.quantizer.num_codes).float()
            n_batches += 1
        if n_batches == 0:
            raise ValueError("evaluate() got no validation batches")
        (counts,) = all_reduce_sum(counts)
        metrics = {key: value / n_batches for key, value in totals.items()}
        probs = counts / counts.sum()
        nonzero = probs[probs > 0]
        metrics["val_usage"] = float((counts > 0).float().mean())
        metrics["val_dead_codes"] = float((counts == 0).float().mean())
        metrics["val_perplexity"] = float(math.exp(float(-(nonzero * nonzero.log()).sum())))
        if getattr(self.quantizer, "dead_code_window", None) is not None:
            metrics["codes_replaced"] = float(self.quantizer.codes_replaced)
        return metrics
