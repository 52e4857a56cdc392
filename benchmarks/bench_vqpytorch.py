"""(b) Against vector-quantize-pytorch (benchmark-only extra: `pip install vector-quantize-pytorch`).

Whole quantizer, forward + backward: their `VectorQuantize` with rotation_trick=True and rotation_trick=False
(set explicitly; False means their straight-through path) against our `VectorQuantizer` with the rotation
estimator and the STE. Same K, euclidean lookup, EMA codebook with decay 0.8 in both, commitment weight 1,
training mode (so both update the codebook), no k-means init and no dead-code replacement. The loss is
<decoder input, g> + the quantizer's auxiliary loss; the gradient is taken with respect to the input tokens.

Rotation alone: our rotation estimator (estimators.get("rotation").transport) against their rotation
function (found in their source by name, `rotate_to` in current versions), forward + backward, same shapes
and inputs as bench_estimators.py.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks._common import autocast, interleaved
from benchmarks.bench_estimators import estimator_step, inputs, transport_step
from models.quantizer import VectorQuantizer

vqp = pytest.importorskip("vector_quantize_pytorch", reason="vector-quantize-pytorch is not installed "
                          "(pip install vector-quantize-pytorch, or the project's `bench` extra)")
from vector_quantize_pytorch import VectorQuantize  # noqa: E402
from vector_quantize_pytorch import vector_quantize_pytorch as vqp_module  # noqa: E402

#: Their rotation function: `rotate_to` (1.x); older releases named it differently.
ROTATION_FUNCTION_NAMES = ("rotate_to", "rotate_from_to", "rotation_trick")
their_rotation = next((getattr(vqp_module, n) for n in ROTATION_FUNCTION_NAMES if hasattr(vqp_module, n)), None)

#: (tokens N, dim D, codes K)
QUANTIZER_SHAPES = [(4096, 16, 256), (16384, 32, 1024)]
ROTATION_SHAPES = [(65536, 32), (65536, 256)]


def ours(estimator: str, k: int, d: int, device):
    return VectorQuantizer(k, d, estimator=estimator, lookup="euclidean", codebook_learning="ema",
                           ema_decay=0.8, beta=1.0).to(device).train()


def theirs(rotation_trick: bool, k: int, d: int, device):
    return VectorQuantize(dim=d, codebook_size=k, decay=0.8, commitment_weight=1.0, rotation_trick=rotation_trick,
                          kmeans_init=False, use_cosine_sim=False, threshold_ema_dead_code=0).to(device).train()


def our_step(vq, x, g, device):
    def step():
        with autocast(device):
            out = vq(x)
            loss = (out.decoder_input.float() * g).sum() + out.aux_loss
        torch.autograd.grad(loss, x)

    return step


def their_step(vq, x, g, device):
    def step():
        with autocast(device):
            quantized, _indices, commit = vq(x.unsqueeze(0))
            loss = (quantized[0].float() * g).sum() + commit.sum()
        torch.autograd.grad(loss, x)

    return step


@pytest.mark.parametrize("n,d,k", QUANTIZER_SHAPES, ids=[f"N{n}-D{d}-K{k}" for n, d, k in QUANTIZER_SHAPES])
def test_whole_quantizer_forward_backward(benchmark, request, device, n, d, k):
    benchmark.group = f"b. quantizer fwd+bwd N={n} D={d} K={k}"
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(n, d, generator=gen).to(device).requires_grad_()
    g = torch.randn(n, d, generator=gen).to(device)
    others = {
        "ours ste": our_step(ours("ste", k, d, device), x, g, device),
        "vqp rotation_trick=True": their_step(theirs(True, k, d, device), x, g, device),
        "vqp rotation_trick=False": their_step(theirs(False, k, d, device), x, g, device),
    }
    info = interleaved(benchmark, request, "ours rotation", our_step(ours("rotation", k, d, device), x, g, device),
                       others, device, cap=10)
    info.update(section="b-quantizer", N=n, D=d, K=k)


@pytest.mark.skipif(their_rotation is None, reason=f"no rotation function {ROTATION_FUNCTION_NAMES} in "
                    "vector_quantize_pytorch.vector_quantize_pytorch")
@pytest.mark.parametrize("n,d", ROTATION_SHAPES, ids=[f"N{n}-D{d}" for n, d in ROTATION_SHAPES])
def test_rotation_function_forward_backward(benchmark, request, device, n, d):
    benchmark.group = f"b. rotation alone fwd+bwd N={n} D={d}"
    e, q, g = inputs(n, d, device)
    others = {
        f"vqp {their_rotation.__name__}": transport_step(their_rotation, e, q, g, device),
        "ste": estimator_step("ste", e, q, g, device),
    }
    info = interleaved(benchmark, request, "ours rotation", estimator_step("rotation", e, q, g, device), others,
                       device)
    info.update(section="b-rotation", N=n, D=d, their_function=f"vector_quantize_pytorch.{their_rotation.__name__}")
