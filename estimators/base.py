"""The three kinds of estimator and what each is given (see the README's "Estimators" section).

* transport: ``q_tilde = transport(e, q)`` on tokens (N, D). The forward value is q; only the backward
  differs (paper §3-§4, A.8, A.9). Nothing flows back to q (the codebook learns by EMA or its own loss).
* decoder_aware: needs the loss as a function of the decoder input, ``loss_of(z) -> scalar``, to run the
  decoder more than once (paper §3: Hessian approximation and exact gradients).
* sampling: replaces the hard assignment; given logits over the codes, the codebook and the training progress
  (Gumbel-softmax, the paper's §5.1 baseline).

The quantizer (models/quantizer.py) gives each kind what it needs and hands the model family one
``reconstruction_loss(loss_of)`` whatever the estimator, so families never branch on the estimator.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

#: Norms, and 1 ± cos(e, q), below this are degenerate points with a documented fallback.
EPS = 1e-6


@contextmanager
def float32_arithmetic(device_type: str):
    """Run the enclosed estimator arithmetic in float32 even under autocast."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or unchanged if it already is float32/float64 (so float64 checks stay exact)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class Estimator:
    """Common base: a name (set by the registry), a kind, and the reconstruction-loss protocol."""

    name: str = "?"
    kind: str = "?"
    #: The paper section a reader should look at; shown by `describe()`.
    paper_section: str = ""

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return f"{self.name} ({self.kind}, {self.paper_section}): {doc[0] if doc else ''}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class TransportEstimator(Estimator):
    """Base of the estimators whose decoder input is a function of (e, q) alone."""

    kind = "transport"

    def transport(self, e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Decoder input q_tilde (value q) for encoder outputs e and their codes q, both (N, D)."""
        raise NotImplementedError


class DecoderAwareEstimator(Estimator):
    """Base of the estimators that need `loss_of(decoder_input)` to run the decoder themselves."""

    kind = "decoder_aware"

    def decoder_loss(self, e: torch.Tensor, q: torch.Tensor, loss_of):
        """Return (loss to backpropagate, reconstruction loss L(D(q)) to report).

        `loss_of(z)` decodes tokens z (N, D) and returns the scalar reconstruction loss.
        """
        raise NotImplementedError


class SamplingEstimator(Estimator):
    """Base of the estimators that replace the hard code assignment by a sample from logits."""

    kind = "sampling"

    def sample(self, logits: torch.Tensor, codebook: torch.Tensor, progress: float, training: bool):
        """Return a `CodeSample` (decoder input, indices, weighted auxiliary loss, temperature)."""
        raise NotImplementedError
