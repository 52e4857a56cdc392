"""The vector quantizer shared by every model family (paper §3-§4; settings of Tables 8-11).

Codebook (K, D) learned by EMA (decay; the paper uses 0.8 for VQ-VAEs) or by the codebook loss
‖sg(e) − q‖² (the authors' VQGANs); commitment β‖e − sg(q)‖²; euclidean or cosine lookup; optional
factorised codes (project to a low dimension, then l2-normalise through the cosine lookup, as ViT-VQGAN).
Inputs are tokens (N, D) or channel-first latents (B, D, ...), e.g. (B, D, H, W) or (B, D, T, H, W).

The estimator makes the decoder input (`Estimator.quantize`, estimators/base.py); the quantizer offers it the
codebook, the nearest-code search and, for an estimator that chooses its codes itself, a logits head:
* transport: decoder input = estimator.transport(e, q); no gradient reaches the codebook through it.
* decoder_aware: decoder input has value q; the family's reconstruction loss is computed by the estimator
  through `QuantizerOutput.reconstruction_loss(loss_of)`, which runs the decoder as the estimator needs.
* sampling (`chooses_codes`): a linear head maps each token to K logits; the estimator samples the decoder
  input from the codebook. The codebook then learns through the decoder (as in the Gumbel VQ-VAE), not by
  EMA, and there is no commitment term.
* codebook_transport (`codebook_gradient`): the decoder input keeps q in the graph, so the codebook also learns
  through the decoder; NSVQ and DiVeQ learn it that way alone (no EMA, codebook loss or commitment).

Options beyond the paper (README "Quantizer options"):
* `reparameterization`: the codebook as a function of learned parameters, usable with every estimator whose
  codebook is not an EMA buffer: "affine" (Huh et al., ICML 2023: C = C'·diag(a) + b with learned per-dimension
  scale a and shift b), "affine_running" (the same map from running statistics: C' standardised by its own
  per-dimension mean and std, then given the encoder outputs' running std and mean, decay 0.99; our reading of
  their variant without learned a, b), or "simvq" (Zhu et al. 2024: C = B·Wᵀ, a learned linear map W of a
  frozen random basis B; W starts at the identity, so the initial codebook is the plain one — our choice).
* `dead_code_window`: a code that no token used for that many training steps is replaced by a randomly chosen
  encoder output of the current batch (before the batch's lookup; written back through the reparameterization),
  counted in the `codes_replaced` buffer (reported per run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import estimators
from estimators.base import CodeChoice, at_least_float32

from .code_search import nearest_code

CODEBOOK_LEARNING = ("ema", "loss")
LOOKUPS = ("euclidean", "cosine")
REPARAMETERIZATIONS = ("none", "affine", "affine_running", "simvq")
#: reparameterizations through which a replaced code cannot be written back (a shared map or statistics)
NOT_REPLACEABLE = ("affine_running", "simvq")
#: decay of the running encoder-output statistics of the "affine_running" reparameterization
RUNNING_STATISTICS_DECAY = 0.99


def to_tokens(z: torch.Tensor):
    """(N, D) or channel-first (B, D, ...) → tokens (N, D) and a function that restores the layout."""
    if z.ndim == 2:
        return z, lambda tokens: tokens
    batch, dim, *rest = z.shape
    tokens = z.movedim(1, -1).reshape(-1, dim)

    def restore(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, *rest, t.shape[-1]).movedim(-1, 1)

    return tokens, restore


@dataclass
class QuantizerOutput:
    """Everything a family and the metrics need from one quantizer call."""

    decoder_input: torch.Tensor  # the input's layout, D channels
    indices: torch.Tensor  # the input's layout without the channel dim
    aux_loss: torch.Tensor  # commitment + codebook loss (+ sampling term), scalar
    e: torch.Tensor  # tokens (N, d) in the lookup space, in the graph
    q: torch.Tensor  # their codes (N, d), detached
    num_codes: int
    _reconstruction: Callable = field(repr=False, default=None)

    def reconstruction_loss(self, loss_of: Callable[[torch.Tensor], torch.Tensor]):
        """(loss to backpropagate, reconstruction loss to report) for `loss_of(decoder_input) -> scalar`.

        The one place where a family's objective meets the estimator (paper §3: decoder-aware estimators
        run the decoder themselves; every other kind decodes `decoder_input` once).
        """
        return self._reconstruction(loss_of)

    @torch.no_grad()
    def statistics(self) -> dict[str, torch.Tensor]:
        """Per-batch statistics as 0-dim tensors on the batch's device (the trainer reads them only at its log
        steps, so a GPU step never waits for them): usage (fraction of codes used), perplexity, quantization
        error (per-element MSE). Under data parallelism they are those of the global batch: the code counts
        and squared errors of every rank are summed first."""
        from . import collectives  # data parallelism: the statistics of the global batch

        counts = code_counts(self.indices.reshape(-1), self.num_codes)
        if collectives.distributed():
            squared = (self.q.double() - self.e.detach().double()).square().sum().reshape(1)
            local = torch.cat([counts.double(), squared, squared.new_tensor([self.q.numel()])])
            (total,) = collectives.all_reduce_sum(local)
            counts = total[:-2].to(counts.dtype)
            quant_error = (total[-2] / total[-1]).float()
        else:
            quant_error = F.mse_loss(self.q.float(), self.e.detach().float())
        probs = counts / counts.sum()
        if probs.is_cuda:  # boolean indexing has a data-dependent size: it would wait for the GPU
            entropy = -torch.special.xlogy(probs, probs).sum()
        else:  # the sum over the used codes alone, in the order the reference results were computed in
            entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        return {
            "usage_batch": (counts > 0).float().mean(),
            "perplexity": entropy.exp(),
            "quant_error": quant_error,
        }


def code_counts(indices: torch.Tensor, num_codes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """How many of `indices` (N,) name each of the `num_codes` codes, as `dtype` (K,).

    The same integers as torch.bincount, without its device synchronisation on CUDA (bincount reads the
    largest index back to size its output)."""
    ones = torch.ones(indices.shape, dtype=dtype, device=indices.device)
    return torch.zeros(num_codes, dtype=dtype, device=indices.device).index_add_(0, indices, ones)


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a pluggable gradient estimator (see module docstring)."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        estimator="rotation",
        estimator_params: dict | None = None,
        lookup: str = "euclidean",
        codebook_learning: str = "ema",
        ema_decay: float = 0.8,
        beta: float = 1.0,
        factorized_dim: int | None = None,
        chunk_size: int | None = None,
        init_std: float = 1.0,
        reparameterization: str = "none",
        dead_code_window: int | None = None,
    ):
        super().__init__()
        if lookup not in LOOKUPS:
            raise ValueError(f"unknown lookup {lookup!r}; valid: {', '.join(LOOKUPS)}")
        if codebook_learning not in CODEBOOK_LEARNING:
            raise ValueError(f"unknown codebook_learning {codebook_learning!r}; valid: {', '.join(CODEBOOK_LEARNING)}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.estimator = (
            estimators.get(estimator, **(estimator_params or {})) if isinstance(estimator, str) else estimator
        )
        self.num_codes = int(num_codes)
        self.dim = int(dim)
        self.code_dim = int(factorized_dim or dim)
        self.lookup = lookup
        self.beta = float(beta)
        self.ema_decay = float(ema_decay)
        self.chunk_size = chunk_size
        self.progress = 0.0  # training progress in [0, 1], set by the trainer (sampling schedules)
        self.codebook_learning = self.estimator.codebook_learning or codebook_learning
        if self.estimator.codebook_gradient and self.codebook_learning == "ema":
            raise ValueError(f"estimator {self.estimator.name!r} sends the decoder's gradient to the codebook, which "
                             f"the EMA update would overwrite; set codebook_learning: loss")
        if reparameterization not in REPARAMETERIZATIONS:
            raise ValueError(f"unknown reparameterization {reparameterization!r}; valid: "
                             f"{', '.join(REPARAMETERIZATIONS)}")
        if reparameterization != "none" and self.codebook_learning == "ema":
            raise ValueError(f"reparameterization {reparameterization!r} needs a codebook learned by a gradient: "
                             f"the EMA update overwrites the codes; set codebook_learning: loss")
        if dead_code_window is not None and reparameterization in NOT_REPLACEABLE:
            raise ValueError(f"dead_code_window cannot be used with reparameterization {reparameterization!r}: "
                             f"its codes share one map, so a replaced code cannot be written back")
        if dead_code_window is not None and dead_code_window < 1:
            raise ValueError(f"dead_code_window must be a positive number of steps, got {dead_code_window}")
        self.reparameterization = reparameterization
        self.dead_code_window = dead_code_window

        self.project_in = nn.Linear(dim, self.code_dim) if factorized_dim else nn.Identity()
        self.project_out = nn.Linear(self.code_dim, dim) if factorized_dim else nn.Identity()
        self.logits_head = nn.Linear(self.code_dim, self.num_codes) if self.estimator.uses_logits_head else None

        initial = torch.randn(self.num_codes, self.code_dim) * init_std
        if lookup == "cosine":
            initial = F.normalize(initial, dim=-1)
        if self.codebook_learning == "ema":
            self.register_buffer("embedding", initial)
            self.register_buffer("cluster_size", torch.ones(self.num_codes))
            self.register_buffer("embed_sum", initial.clone())
        elif reparameterization == "simvq":
            self.register_buffer("embedding", initial)  # the frozen random basis B
            self.simvq_map = nn.Linear(self.code_dim, self.code_dim, bias=False)
            nn.init.eye_(self.simvq_map.weight)
        else:
            self.embedding = nn.Parameter(initial)
        if reparameterization == "affine":
            self.affine_scale = nn.Parameter(torch.ones(self.code_dim))
            self.affine_shift = nn.Parameter(torch.zeros(self.code_dim))
        elif reparameterization == "affine_running":
            self.register_buffer("running_mean", torch.zeros(self.code_dim))
            self.register_buffer("running_std", torch.ones(self.code_dim))
        if dead_code_window is not None:
            self.register_buffer("steps_unused", torch.zeros(self.num_codes, dtype=torch.long))
            self.register_buffer("codes_replaced", torch.zeros((), dtype=torch.long))

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook as used for lookup (K, d): reparameterized, then l2-normalised for the cosine lookup."""
        codes = self.embedding
        if self.reparameterization == "affine":
            codes = codes * self.affine_scale + self.affine_shift
        elif self.reparameterization == "affine_running":
            standardised = (codes - codes.mean(0)) / codes.std(0).clamp_min(1e-6)
            codes = standardised * self.running_std + self.running_mean
        elif self.reparameterization == "simvq":
            codes = self.simvq_map(codes)
        return F.normalize(codes, dim=-1) if self.lookup == "cosine" else codes

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        tokens, restore = to_tokens(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            e = self._lookup_space(tokens)
            if self.training:
                self._before_lookup(e.detach())
            codebook = self.codebook

        def decode_tokens(t: torch.Tensor) -> torch.Tensor:
            return restore(self.project_out(t)).to(z.dtype)

        choice = CodeChoice(codebook, partial(self._nearest, codebook=codebook.detach()),
                            self._logits if self.logits_head is not None else None, self.progress, self.training,
                            self._search)
        quantized = self.estimator.quantize(e, choice, decode_tokens)
        indices = quantized.indices
        if self.training and self.dead_code_window is not None:
            self._count_unused_steps(indices)
        q = codebook[indices]  # gathered before the EMA update; in the graph when the codebook learns by loss
        aux = self._codebook_terms(e, q, indices)
        if quantized.aux_loss is not None:
            aux = aux + quantized.aux_loss
        layout_indices = restore(indices[:, None])[:, 0] if z.ndim > 2 else indices
        return QuantizerOutput(quantized.decoder_input, layout_indices, aux, e, q.detach(), self.num_codes,
                               quantized.reconstruction_loss)

    def _lookup_space(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (N, D) → e (N, d) in the lookup space: projected (factorised codes), l2-normalised (cosine)."""
        e = self.project_in(at_least_float32(tokens))
        return F.normalize(e, dim=-1) if self.lookup == "cosine" else e

    def _nearest(self, e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=e.device.type, enabled=False):
            return nearest_code(e, codebook, self.lookup, self.chunk_size)

    def _search(self, e: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Each token's nearest (euclidean) point among `points` (M, d), for estimators that search their own."""
        with torch.autocast(device_type=e.device.type, enabled=False):
            return nearest_code(e, points, "euclidean", self.chunk_size)

    @torch.no_grad()
    def _before_lookup(self, e: torch.Tensor) -> None:
        """In training, before the batch's lookup: update the running statistics of "affine_running" and
        replace the dead codes from this batch's encoder outputs e (N, d) (see the module docstring)."""
        if self.reparameterization == "affine_running":
            decay = RUNNING_STATISTICS_DECAY
            self.running_mean.mul_(decay).add_(e.mean(0), alpha=1.0 - decay)
            self.running_std.mul_(decay).add_(e.std(0) if e.shape[0] > 1 else self.running_std, alpha=1.0 - decay)
        if self.dead_code_window is not None and e.shape[0] > 0:
            self._replace_dead_codes(e)

    @torch.no_grad()
    def _replace_dead_codes(self, e: torch.Tensor) -> None:
        """Codes unused for `dead_code_window` steps become random rows of e, without a host synchronisation."""
        dead = (self.steps_unused >= self.dead_code_window)[:, None]
        candidates = e[torch.randint(0, e.shape[0], (self.num_codes,), device=e.device)].to(self.embedding.dtype)
        if self.reparameterization == "affine":  # write back through C = C'·a + b
            scale = self.affine_scale.detach()
            scale = torch.where(scale.abs() < 1e-6, torch.full_like(scale, 1e-6), scale)
            candidates = (candidates - self.affine_shift.detach()) / scale
        self.embedding.copy_(torch.where(dead, candidates, self.embedding))
        if self.codebook_learning == "ema":
            self.embed_sum.copy_(torch.where(dead, candidates, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead[:, 0], torch.ones_like(self.cluster_size), self.cluster_size))
        self.codes_replaced.add_(dead.sum())
        self.steps_unused.masked_fill_(dead[:, 0], 0)

    @torch.no_grad()
    def _count_unused_steps(self, indices: torch.Tensor) -> None:
        used = code_counts(indices, self.num_codes) > 0
        self.steps_unused.add_(1).masked_fill_(used, 0)

    def _logits(self, e: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=e.device.type, enabled=False):
            return self.logits_head(e)

    def _codebook_terms(self, e: torch.Tensor, q: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Commitment β‖e − sg(q)‖², plus the codebook loss ‖sg(e) − q‖² or the EMA update (in training).

        A codebook learned through the decoder (sampling estimators) has neither: zero.
        """
        if self.codebook_learning == "decoder":
            return e.new_zeros(())
        with torch.autocast(device_type=e.device.type, enabled=False):
            aux = self.beta * F.mse_loss(e, q.detach())
            if self.codebook_learning == "loss":
                aux = aux + F.mse_loss(q, e.detach())
            elif self.training:
                self._ema_update(e.detach(), indices)
        return aux

    @torch.no_grad()
    def _ema_update(self, e: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA codebook update (van den Oord et al. 2017, App. A.1) with Laplace smoothing of the counts, from
        the counts and sums of every rank and, under gradient accumulation, of every micro-batch of the step."""
        from . import collectives  # data parallelism and gradient accumulation (README "Several GPUs and nodes")

        decay = self.ema_decay
        e = e.to(self.embed_sum.dtype)
        if collectives.defer_ema_update(self, e, indices):
            return  # one update per step, from every micro-batch (collectives.deferred_ema_updates)
        counts = code_counts(indices, self.num_codes, e.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, e)
        counts, sums = collectives.all_reduce_sum(counts, sums)  # every rank's tokens: one codebook on all
        self.cluster_size.mul_(decay).add_(counts, alpha=1.0 - decay)
        self.embed_sum.mul_(decay).add_(sums, alpha=1.0 - decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + self.num_codes * 1e-5) * total
        self.embedding.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def lookup_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Code indices for latents z (no statistics, no update)."""
        tokens, _ = to_tokens(z)
        return self._nearest(self._lookup_space(tokens), self.codebook)
