"""The three kinds of estimator and how each produces the decoder input (see the README's "Estimators" section).

* transport: ``q_tilde = transport(e, q)`` on tokens (N, D). The forward value is q; only the backward
  differs (paper §3-§4, A.8, A.9). Nothing flows back to q (the codebook learns by EMA or its own loss).
* decoder_aware: needs the loss as a function of the decoder input, ``loss_of(z) -> scalar``, to run the
  decoder more than once (paper §3: Hessian approximation and exact gradients).
* sampling: replaces the hard assignment; given logits over the codes, the codebook and the training progress
  (Gumbel-softmax, the paper's §5.1 baseline).
* codebook_transport: a function of (e, q) like transport, but q stays in the graph, so the decoder's gradient
  also reaches the codebook (methods published after the paper: NSVQ, DiVeQ, the synchronised update).
* index_backprop: codes chosen by the largest dot product with the whole codebook, every code in the graph
  through a softmax (IBQ, estimators/ibq.py).

Each kind brings its own behaviour through its base class, so nothing outside this package branches on
`kind` (a descriptive label): the quantizer (models/quantizer.py) calls `quantize(e, codes, decode)`, which
picks the codes, makes the decoder input and says how the reconstruction loss is backpropagated; the gradient
diagnostics and the synthetic problems ask `chooses_codes` and call `loss_at_code(e, q, loss_of)`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

#: Norms, and 1 ± cos(e, q), below this are degenerate points with a documented fallback.
EPS = 1e-6

#: `loss_of(decoder_input) -> scalar`: a model's reconstruction loss as a function of its decoder input.
LossOf = Callable[[torch.Tensor], torch.Tensor]
#: `reconstruction_loss(loss_of) -> (loss to backpropagate, reconstruction loss to report)`.
ReconstructionLoss = Callable[[LossOf], tuple]


@contextmanager
def float32_arithmetic(device_type: str):
    """Run the enclosed estimator arithmetic in float32 even under autocast."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or unchanged if it already is float32/float64 (so float64 checks stay exact)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


@dataclass
class CodeChoice:
    """What the quantizer offers an estimator to choose the codes of its tokens."""

    codebook: torch.Tensor  # (K, d) as used for lookup; in the graph when learned by a loss or the decoder
    nearest: Callable[[torch.Tensor], torch.Tensor]  # tokens (N, d) -> their nearest codes' indices (N,)
    logits: Callable[[torch.Tensor], torch.Tensor] | None  # tokens -> logits (N, K); None: no logits head
    progress: float  # training progress in [0, 1] (sampling schedules)
    training: bool
    #: (tokens (N, d), points (M, d)) -> each token's nearest point (euclidean), for an estimator that
    #: searches points of its own (sf_diveq's interpolated codes); None where the caller offers no search
    search: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


@dataclass
class Quantized:
    """What an estimator hands the quantizer: decoder input, codes and how the reconstruction loss is formed."""

    decoder_input: torch.Tensor  # what `decode` returned: the family's layout
    indices: torch.Tensor  # (N,)
    reconstruction_loss: ReconstructionLoss
    aux_loss: torch.Tensor | None = None  # the estimator's own auxiliary term (sampling: the weighted KL)


@dataclass
class CodeSample:
    """What a sampling estimator draws for tokens (N, D)."""

    decoder_input: torch.Tensor  # (N, D)
    indices: torch.Tensor  # (N,)
    aux_loss: torch.Tensor  # weighted KL-to-uniform, scalar
    temperature: float


def decoded_once(decoder_input: torch.Tensor) -> ReconstructionLoss:
    """The reconstruction loss of an estimator whose gradient crosses `decoder_input` itself: decode it once."""
    def reconstruction_loss(loss_of: LossOf):
        loss = loss_of(decoder_input)
        return loss, loss

    return reconstruction_loss


class Estimator:
    """Common base: a name (set by the registry), a kind, and the quantizer's protocol."""

    name: str = "?"
    kind: str = "?"
    #: The paper section a reader should look at; shown by `describe()`.
    paper_section: str = ""
    #: True when the estimator chooses the codes itself (from logits) instead of taking each token's nearest
    #: code. The quantizer then gives it a logits head and learns the codebook through the decoder, and the
    #: gradient at e for a given code q (what the gradient diagnostics and the synthetic problems measure)
    #: is not defined.
    chooses_codes: bool = False
    #: True when the estimator differentiates the decoder's gradient again (a double backward, e.g. the
    #: Hessian-vector product of paper §3). The decoder then avoids fused attention kernels, which have no
    #: second derivative, and the run cannot use `training.compile`.
    needs_double_backward: bool = False
    #: True when the decoder input carries a gradient to the codebook. With an EMA codebook (a buffer the
    #: update overwrites) that gradient would be lost, so such an estimator is refused with `ema` unless it
    #: learns the codebook through the decoder alone (`codebook_learning = "decoder"`).
    codebook_gradient: bool = False
    #: How the codebook learns with this estimator: None keeps the quantizer's setting (EMA or the codebook
    #: loss); "decoder": through the decoder input only, with no EMA, codebook loss or commitment term.
    codebook_learning: str | None = None
    #: True when the quantizer must give the estimator a linear logits head (sampling estimators).
    uses_logits_head: bool = False

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return f"{self.name} ({self.kind}, {self.paper_section}): {doc[0] if doc else ''}"

    def quantize(self, e: torch.Tensor, codes: CodeChoice, decode: Callable[[torch.Tensor], torch.Tensor]
                 ) -> Quantized:
        """Choose codes for tokens e (N, d), make the decoder input `decode(tokens)` and its reconstruction loss."""
        raise NotImplementedError

    def loss_at_code(self, e: torch.Tensor, q: torch.Tensor, loss_of: LossOf):
        """(loss to backpropagate, loss to report) of `loss_of(decoder input)` for tokens e whose codes are q."""
        raise TypeError(f"estimator {self.name!r} chooses its codes from logits or its own search: it has no "
                        f"gradient at a given code (use an estimator of kind transport, codebook_transport or "
                        f"decoder_aware)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class NearestCodeEstimator(Estimator):
    """Base of the kinds whose gradient crosses the nearest-code assignment e → q (transport, decoder_aware)."""

    def route(self, e: torch.Tensor, q: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor]):
        """(decoder input `decode(tokens of value q)`, its `reconstruction_loss(loss_of)`) for tokens e, codes q."""
        raise NotImplementedError

    def quantize(self, e, codes, decode):
        indices = codes.nearest(e.detach())
        decoder_input, reconstruction_loss = self.route(e, codes.codebook[indices].detach(), decode)
        return Quantized(decoder_input, indices, reconstruction_loss)

    def loss_at_code(self, e, q, loss_of):
        _, reconstruction_loss = self.route(e, q.detach(), lambda tokens: tokens)
        return reconstruction_loss(loss_of)


class TransportEstimator(NearestCodeEstimator):
    """Base of the estimators whose decoder input is a function of (e, q) alone."""

    kind = "transport"

    def transport(self, e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Decoder input q_tilde (value q) for encoder outputs e and their codes q, both (N, D)."""
        raise NotImplementedError

    def route(self, e, q, decode):
        decoder_input = decode(self.transport(e, q))
        return decoder_input, decoded_once(decoder_input)


class DecoderAwareEstimator(NearestCodeEstimator):
    """Base of the estimators that need `loss_of(decoder_input)` to run the decoder themselves."""

    kind = "decoder_aware"

    def decoder_loss(self, e: torch.Tensor, q: torch.Tensor, loss_of: LossOf):
        """Return (loss to backpropagate, reconstruction loss L(D(q)) to report).

        `loss_of(z)` decodes tokens z (N, D) and returns the scalar reconstruction loss.
        """
        raise NotImplementedError

    def route(self, e, q, decode):
        decoder_input = decode(e + (q.to(e.dtype) - e).detach())  # value q; the estimator decodes what it needs

        def reconstruction_loss(loss_of: LossOf):
            return self.decoder_loss(e, q, lambda tokens: loss_of(decode(tokens)))

        return decoder_input, reconstruction_loss


class CodebookTransportEstimator(NearestCodeEstimator):
    """Base of the estimators whose decoder input is a function of (e, q) with q kept in the graph.

    The decoder's gradient reaches e and, through q = C[index], the codebook. `loss_at_code` (a given,
    detached q) measures the part that reaches e. Stochastic estimators draw their noise in training only.
    """

    kind = "codebook_transport"
    codebook_gradient = True

    def transport(self, e: torch.Tensor, q: torch.Tensor, training: bool) -> torch.Tensor:
        """Decoder input for encoder outputs e and their codes q (N, D); q may carry a gradient."""
        raise NotImplementedError

    def quantize(self, e, codes, decode):
        indices = codes.nearest(e.detach())
        decoder_input = decode(self.transport(e, codes.codebook[indices], codes.training))
        return Quantized(decoder_input, indices, decoded_once(decoder_input))

    def route(self, e, q, decode):
        decoder_input = decode(self.transport(e, q, True))  # the training-time gradient at e
        return decoder_input, decoded_once(decoder_input)


class SamplingEstimator(Estimator):
    """Base of the estimators that replace the hard code assignment by a sample from logits."""

    kind = "sampling"
    chooses_codes = True
    codebook_gradient = True
    codebook_learning = "decoder"
    uses_logits_head = True

    def sample(self, logits: torch.Tensor, codebook: torch.Tensor, progress: float, training: bool) -> CodeSample:
        """Return a `CodeSample` (decoder input, indices, weighted auxiliary loss, temperature)."""
        raise NotImplementedError

    def quantize(self, e, codes, decode):
        if codes.logits is None:
            raise ValueError(f"estimator {self.name!r} samples codes from logits, but the quantizer has no "
                             f"logits head")
        sample = self.sample(codes.logits(e), codes.codebook, codes.progress, codes.training)
        decoder_input = decode(sample.decoder_input)
        return Quantized(decoder_input, sample.indices, decoded_once(decoder_input), sample.aux_loss)
