"""Index backpropagation quantization, IBQ (Shi et al. 2024, "Taming Scalable Visual Tokenizer for
Autoregressive Image Generation"); after the paper.

Logits are the dot products of each token with the whole codebook, ℓ = eCᵀ, p = softmax(ℓ); the code is
argmax ℓ and the decoder input is (onehot(argmax ℓ) − sg(p) + p)·C, so every code receives a gradient
through p, not only the chosen one. Written C[argmax] + (pC − sg(pC)), whose value is the chosen code exactly
and whose gradient is the same. With s = Cg (K,) and a = p ⊙ (s − pᵀs):

    ∂L/∂e = aᵀC,    ∂L/∂C = onehot·gᵀ + p·gᵀ + a·eᵀ.

The quantizer keeps its codebook loss and commitment term (`codebook_learning: loss`; an EMA codebook would
drop the gradient). The code is chosen by the largest dot product, which is the nearest code for the cosine
lookup and, for the euclidean lookup, may differ from it (it favours long codes), as in the method.
"""
from __future__ import annotations

from .base import Estimator, Quantized, at_least_float32, decoded_once, float32_arithmetic
from .registry import register


@register("ibq")
class IndexBackpropagation(Estimator):
    """IBQ: (onehot(argmax eCᵀ) − sg(p) + p)·C with p = softmax(eCᵀ); every code gets a gradient (Shi et al. 2024)."""

    kind = "index_backprop"
    paper_section = "after the paper: Shi et al. 2024"
    chooses_codes = True
    codebook_gradient = True

    def quantize(self, e, codes, decode):
        with float32_arithmetic(e.device.type):
            e32 = at_least_float32(e)
            codebook = codes.codebook.to(e32.dtype)
            logits = e32 @ codebook.t()
            indices = logits.detach().argmax(-1)
            soft = logits.softmax(-1) @ codebook
            decoder_input = codebook[indices] + (soft - soft.detach())
        decoder_input = decode(decoder_input.to(e.dtype))
        return Quantized(decoder_input, indices, decoded_once(decoder_input))
