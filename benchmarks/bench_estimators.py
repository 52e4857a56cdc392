"""(a) Transport estimators alone, forward + backward, each measured against the STE in the same rounds.

One step is `out = estimator.transport(e, q)` (under bf16 autocast on CUDA) followed by
`torch.autograd.grad(out, e, g)`, with e a leaf (N, D) float32 tensor, q its codes and g the incoming
gradient. The STE's step is the same with `e + sg(q − e)`. The subject runs in the default fused-backward
mode ("auto", estimators/fused.py: compiled from N·D ≥ 2²¹ in float32). For `rotation`, the same rounds also
time it with the mode forced: "rotation (eager)" ("off") and "rotation (compiled)" ("on": torch.compile), and
"rotation (before)", the code as committed before the performance work (benchmarks/_baseline.py).
"""
from __future__ import annotations

import pytest
import torch

import estimators
from benchmarks import _baseline
from benchmarks._common import autocast, interleaved

NAMES = ["ste", "rotation", "reflection", "rotation_unscaled", "rotation_gamma"]
SHAPES = [(4096, 3), (4096, 32), (4096, 256), (65536, 3), (65536, 32), (65536, 256)]


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
