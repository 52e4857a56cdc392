"""(d) Peak memory of the rotation trick against the STE, forward + backward at N = 65536, D = 256, and the
explicit D×D form (R built per token, N·D² floats) as the counter-example.

Peak memory is measured (benchmarks/_common.py `peak_memory`) as the bytes allocated during one step on
top of the inputs e, q, g, which exist for either estimator. The explicit form does not fit at N = 65536
(N·D²·4 bytes = 16 GiB for R alone), so it is measured at N = 256 and N = 1024, where its peak per token is
constant, and extrapolated linearly to N = 65536 (stated as such in the report).
"""
from __future__ import annotations

import torch

from benchmarks._common import autocast, interleaved, peak_memory, timed
from benchmarks.bench_estimators import estimator_step, inputs, transport_step

N, D = 65536, 256
EXPLICIT_NS = (256, 1024)


def explicit_rotation(e, q):
    """λ·R·e with λ and R built per token as (N, D, D) matrices and detached (paper §4.2, Algorithm 1)."""
    with torch.no_grad():
        e_norm = e.norm(dim=-1, keepdim=True)
        q_norm = q.norm(dim=-1, keepdim=True)
        e_hat, q_hat = e / e_norm, q / q_norm
        r = e_hat + q_hat
        r = r / r.norm(dim=-1, keepdim=True)
        eye = torch.eye(e.shape[-1], device=e.device, dtype=e.dtype)
        rot = eye - 2.0 * r[:, :, None] * r[:, None, :] + 2.0 * q_hat[:, :, None] * e_hat[:, None, :]
        lam = q_norm / e_norm
    return lam * torch.bmm(rot, e[:, :, None])[:, :, 0]


def test_peak_memory_rotation_vs_ste(benchmark, request, device):
    benchmark.group = f"d. peak memory fwd+bwd N={N} D={D}"
    e, q, g = inputs(N, D, device)
    steps = {name: estimator_step(name, e, q, g, device) for name in ("rotation", "ste", "reflection")}
    for step in steps.values():
        step()  # warm-up
    peaks = {name: peak_memory(step, device) for name, step in steps.items()}

    explicit = {}
    for n in EXPLICIT_NS:
        e_s, q_s, g_s = (t[:n].detach().clone() for t in (e, q, g))
        e_s.requires_grad_()
        step = transport_step(explicit_rotation, e_s, q_s, g_s, device)
        step()
        explicit[n] = {"peak_bytes": peak_memory(step, device), "seconds": timed(step, device)}
        # Same gradient as the closed form (sanity check of the counter-example).
        with autocast(device):
            out = explicit_rotation(e_s, q_s)
        (ref,) = torch.autograd.grad(out, e_s, g_s)
        import estimators

        e_c = e_s.detach().clone().requires_grad_()
        (closed,) = torch.autograd.grad(estimators.get("rotation").transport(e_c, q_s), e_c, g_s)
        explicit[n]["max_abs_diff_vs_closed_form"] = float((ref - closed).abs().max())
    per_token = explicit[EXPLICIT_NS[-1]]["peak_bytes"] / EXPLICIT_NS[-1]
    seconds_per_token = explicit[EXPLICIT_NS[-1]]["seconds"] / EXPLICIT_NS[-1]

    info = interleaved(benchmark, request, "rotation", steps["rotation"], {"ste": steps["ste"]}, device, cap=20)
    nd_bytes = N * D * 4
    info.update(
        section="d", N=N, D=D, peak_bytes=peaks, nd_bytes=nd_bytes,
        rotation_minus_ste_in_nd=(peaks["rotation"] - peaks["ste"]) / nd_bytes,
        explicit=explicit,
        explicit_extrapolated_peak_bytes=per_token * N,
        explicit_extrapolated_seconds=seconds_per_token * N,
        explicit_extrapolation=f"linear in N from N={EXPLICIT_NS[-1]} (measured at N={EXPLICIT_NS})",
    )
