"""(a) Transport estimators alone, forward + backward, each measured against the STE in the same rounds.

One step is `out = estimator.transport(e, q)` (under bf16 autocast on CUDA) followed by
`torch.autograd.grad(out, e, g)`, with e a leaf (N, D) float32 tensor, q its codes and g the incoming
gradient. The STE's step is the same with `e + sg(q − e)`. The subject runs in the default fused-backward
mode ("auto", estimators/fused.py: compiled from N·D ≥ 2²¹ in float32). For `rotation`, the same rounds also
time it with the mode forced: "rotation (eager)" ("off") and "rotation (compiled)" ("on": torch.compile), and
"rotation (before)", the code as committed before the performance work (benchmarks/_baseline.py).

The estimators published after the paper are timed against the same STE step in the same rounds:
`nsvq`, `diveq` and `sync` as `transport(e, q, training=True)` with the gradient taken to e and to q (they
send one to the codebook); `ibq` and `sf_diveq`, which choose their codes from the whole codebook, as the
whole `quantize` step on a K = 1024 codebook (gradient to e and to the codebook) against the STE's
`quantize` (nearest-code search, then e + sg(q − e), gradient to e).
"""
from __future__ import annotations

import pytest
import torch

import estimators
from benchmarks import _baseline
from estimators.base import CodeChoice
from models.code_search import nearest_code
from benchmarks._common import autocast, interleaved

NAMES = ["ste", "rotation", "reflection", "rotation_unscaled", "rotation_gamma"]
SHAPES = [(4096, 3), (4096, 32), (4096, 256), (65536, 3), (65536, 32), (65536, 256)]
#: Estimators after the paper whose decoder input is a function of (e, q) with q in the graph.
BEYOND_TRANSPORT = ["nsvq", "diveq", "sync"]
BEYOND_TRANSPORT_SHAPES = [(4096, 32), (65536, 32), (65536, 256)]
#: Estimators after the paper that search the whole codebook themselves, and their codebook size.
BEYOND_QUANTIZE = ["ibq", "sf_diveq"]
BEYOND_QUANTIZE_SHAPES = [(4096, 32), (16384, 32)]
BEYOND_CODES = 1024


def inputs(n: int, d: int, device):
    gen = torch.Generator().manual_seed(n * 1000 + d)
    q = torch.randn(n, d, generator=gen)
    e = q + 0.5 * torch.randn(n, d, generator=gen)  # e near its code, as after a lookup
    g = torch.randn(n, d, generator=gen)
    return e.to(device).requires_grad_(), q.to(device), g.to(device)


def transport_step(transport, e, q, g, device):
    def step():
        with autocast(device):
            out = transport(e, q)
        torch.autograd.grad(out, e, g)

    return step


def estimator_step(name, e, q, g, device):
    return transport_step(estimators.get(name).transport, e, q, g, device)


def in_mode(step, mode: str):
    """`step` with the fused-backward mode forced to `mode` (estimators/fused.py) for the call."""
    def forced():
        estimators.set_fused_backward(mode)
        try:
            step()
        finally:
            estimators.set_fused_backward(None)

    return forced


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"N{n}-D{d}" for n, d in SHAPES])
@pytest.mark.parametrize("name", NAMES)
def test_transport_forward_backward(benchmark, request, device, name, n, d):
    benchmark.group = f"a. transport fwd+bwd N={n} D={d}"
    e, q, g = inputs(n, d, device)
    others = {"ste": estimator_step("ste", e, q, g, device)}  # for name == "ste": an A/A check of the noise
    if name == "rotation":
        others["rotation (eager)"] = in_mode(estimator_step(name, e, q, g, device), "off")
        others["rotation (compiled)"] = in_mode(estimator_step(name, e, q, g, device), "on")
        others["rotation (before)"] = transport_step(_baseline.rotation_transport, e, q, g, device)
    info = interleaved(benchmark, request, name, estimator_step(name, e, q, g, device), others, device)
    info.update(section="a", estimator=name, N=n, D=d)


def codebook_transport_step(name, e, q, g, device):
    """`transport(e, q, training=True)` and its gradient to e and q (the codebook's share)."""
    estimator = estimators.get(name)
    q = q.clone().requires_grad_()

    def step():
        with autocast(device):
            out = estimator.transport(e, q, True)
        torch.autograd.grad(out, (e, q), g)

    return step


def quantize_step(name, e, codebook, g, device):
    """The whole `quantize` step on `codebook` (K, D): codes chosen, decoder input, gradient to e (and to the
    codebook where the estimator sends one)."""
    estimator = estimators.get(name)
    codebook = codebook.clone().requires_grad_(estimator.codebook_gradient)
    choice = CodeChoice(codebook, lambda t: nearest_code(t, codebook.detach()), None, 0.0, True,
                        lambda t, points: nearest_code(t, points))
    wrt = (e, codebook) if estimator.codebook_gradient else (e,)

    def step():
        with autocast(device):
            out = estimator.quantize(e, choice, lambda t: t).decoder_input
        torch.autograd.grad(out, wrt, g)

    return step


@pytest.mark.parametrize("n,d", BEYOND_TRANSPORT_SHAPES, ids=[f"N{n}-D{d}" for n, d in BEYOND_TRANSPORT_SHAPES])
@pytest.mark.parametrize("name", BEYOND_TRANSPORT)
def test_codebook_transport_forward_backward(benchmark, request, device, name, n, d):
    benchmark.group = f"a. transport fwd+bwd N={n} D={d}"
    e, q, g = inputs(n, d, device)
    others = {"ste": estimator_step("ste", e, q, g, device)}
    label = f"{name} (grad to e and q)"
    info = interleaved(benchmark, request, label, codebook_transport_step(name, e, q, g, device), others, device)
    info.update(section="a", estimator=label, N=n, D=d)


@pytest.mark.parametrize("n,d", BEYOND_QUANTIZE_SHAPES, ids=[f"N{n}-D{d}" for n, d in BEYOND_QUANTIZE_SHAPES])
@pytest.mark.parametrize("name", BEYOND_QUANTIZE)
def test_codebook_search_quantize_forward_backward(benchmark, request, device, name, n, d):
    benchmark.group = f"a. quantize fwd+bwd N={n} D={d} K={BEYOND_CODES}"
    e, _, g = inputs(n, d, device)
    codebook = torch.randn(BEYOND_CODES, d, generator=torch.Generator().manual_seed(d)).to(device)
    others = {"ste": quantize_step("ste", e, codebook, g, device)}
    label = f"{name} (quantize, K={BEYOND_CODES})"
    info = interleaved(benchmark, request, label, quantize_step(name, e, codebook, g, device), others, device)
    info.update(section="a", estimator=label, N=n, D=d)
