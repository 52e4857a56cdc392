"""The C kernel of the rotation family's backward (estimators/native_kernel.py): its edges and its build cache.

Its numerics at generic, degenerate and near-opposite points are tested with the other forms through the
`transport_backend` fixture ("native"); here: row blocks and vector chunks that do not fill up, layouts,
threads, the near-opposite count, and how it is built and cached.
"""
from __future__ import annotations

import pytest
import torch

from estimators import native_kernel
from estimators.base import EPS
from estimators.rotation_math import NEAR_OPPOSITE, _rotation_backward_eager

VARIANTS = [("norm_ratio", False), ("one", False), ("inverse_sq_distance", False), ("norm_ratio", True)]


def tokens(n, d, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=gen, dtype=dtype)
    e = q + 0.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    g = torch.randn(n, d, generator=gen, dtype=dtype)
    return g, e, q


def kernel(g, e, q, scale="norm_ratio", radial_removed=False):
    return native_kernel.rotation_backward(g, e, q, scale, radial_removed, EPS, NEAR_OPPOSITE)


def relative_error(got, want, g, e, q, scale):
    """Per-row error relative to ‖want‖ + ‖s·g‖: the size of the terms that are combined (a radial-removed
    gradient in D = 1 is 0 up to their rounding)."""
    g, e, q = g.double(), e.double(), q.double()
    s = {"norm_ratio": q.norm(dim=-1) / e.norm(dim=-1), "one": torch.ones(len(g), dtype=g.dtype),
         "inverse_sq_distance": 1 / (8 * (q - e).pow(2).sum(-1))}[scale]
    return ((got.double() - want).norm(dim=-1) / (want.norm(dim=-1) + s * g.norm(dim=-1))).max().item()


@pytest.mark.parametrize("scale,radial_removed", VARIANTS)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 100])
@pytest.mark.parametrize("d", [1, 3, 15, 16, 17, 32, 33, 256])
def test_matches_the_float64_closed_form_for_any_row_count_and_dimension(n, d, scale, radial_removed):
    """Rows come in blocks of 16 and each row in vector chunks of 16: every partial block and chunk."""
    g, e, q = tokens(n, d)
    want, want_one_plus_cos = _rotation_backward_eager(g.double(), e.double(), q.double(), scale, radial_removed)
    got, one_plus_cos, near = kernel(g, e, q, scale, radial_removed)
    assert got.shape == (n, d) and got.dtype == torch.float32
    assert relative_error(got, want, g, e, q, scale) < 2e-6
    assert torch.allclose(one_plus_cos.double(), want_one_plus_cos, rtol=1e-5, atol=1e-6)
    assert near == int((want_one_plus_cos < NEAR_OPPOSITE).sum())


def test_counts_and_reports_near_opposite_tokens():
    g, e, q = tokens(40, 8)
    e[[3, 17, 38]] = -q[[3, 17, 38]] * 1.5  # 1 + cos = 0 exactly: the reflection fallback
    e[21] = -q[21] + 1e-3 * torch.randn(8)  # 1 + cos ≈ 1e-6: below the recompute threshold
    got, one_plus_cos, near = kernel(g, e, q)
    assert near == 4
    assert set((one_plus_cos.view(-1) < NEAR_OPPOSITE).nonzero().view(-1).tolist()) == {3, 17, 21, 38}
    assert torch.isfinite(got).all()


def test_degenerate_tokens_take_g_and_nan_behaves_as_in_the_eager_form():
    g, e, q = tokens(20, 5)
    e[2] = 0.0
    q[7] = 1e-8
    e[11, 0] = float("nan")
    want, _ = _rotation_backward_eager(g, e, q, "norm_ratio", False)
    got, _, _ = kernel(g, e, q)
    for row in (2, 7, 11):  # ‖e‖ or ‖q‖ below EPS (or NaN, which fails "> EPS" too): the STE gradient
        assert torch.equal(got[row], g[row])
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_any_layout_and_leading_shape_give_the_same_result():
    g, e, q = tokens(6 * 7, 24)
    want, want_opc, _ = kernel(g, e, q)
    batched = [t.view(6, 7, 24) for t in (g, e, q)]
    got, one_plus_cos, _ = kernel(*batched)
    assert got.shape == (6, 7, 24) and one_plus_cos.shape == (6, 7, 1)
    assert torch.equal(got.view(42, 24), want) and torch.equal(one_plus_cos.view(42, 1), want_opc)
    transposed = [t.t().contiguous().t() for t in (g, e, q)]  # same values, column-major strides
    assert not transposed[0].is_contiguous()
    assert torch.equal(kernel(*transposed)[0], want)
    expanded_g = torch.ones(1, 24).expand(42, 24)  # what `out.sum().backward()` hands over
    assert torch.equal(kernel(expanded_g, e, q)[0], kernel(torch.ones(42, 24), e, q)[0])


def test_threads_split_rows_without_changing_a_bit(monkeypatch):
    g, e, q = tokens(3 * native_kernel.MIN_ROWS_PER_THREAD + 5, 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    want = kernel(g, e, q)
    calls = []
    real = native_kernel._library().rotation_backward

    def counting(*args):
        calls.append(args[5])  # rows of this call
        return real(*args)

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(native_kernel, "_library", lambda: type("Lib", (), {"rotation_backward": counting}))
    got = kernel(g, e, q)
    assert len(calls) == 3 and sum(calls) == g.shape[0]  # 3 parts: min(4 threads, rows / MIN_ROWS_PER_THREAD)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[2] == want[2]


def test_applies_to_float32_cpu_tensors_of_one_shape_only():
    g, e, q = tokens(4, 3)
    assert native_kernel.applies(g, e, q)
    assert not native_kernel.applies(g.double(), e.double(), q.double())
    assert not native_kernel.applies(g, e, q[:2])


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(native_kernel.CACHE_ENV, str(tmp_path))
    native_kernel._built_once.cache_clear()
    yield tmp_path
    native_kernel._built_once.cache_clear()


def test_builds_once_into_the_cache_and_reuses_it(fresh_cache, monkeypatch):
    assert native_kernel.build_failure() is None
    built = sorted(fresh_cache.glob("rotation_backward-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native_kernel._built_once.cache_clear()
    monkeypatch.setattr(native_kernel, "_compile", lambda *args: pytest.fail("rebuilt a cached kernel"))
    assert native_kernel.build_failure() is None
    assert built[0].stat().st_mtime_ns == stamp
    assert list(fresh_cache.iterdir()) == built  # no scratch files left behind


def test_another_cpu_gets_its_own_build(fresh_cache, monkeypatch):
    """A cluster's nodes may share a home directory: a build for one CPU must never load on another."""
    native_kernel._library()
    native_kernel._built_once.cache_clear()
    monkeypatch.setattr(native_kernel, "_cpu_identity", lambda: "some other CPU")
    native_kernel._library()
    assert len(list(fresh_cache.glob("rotation_backward-*.so"))) == 2


def test_a_failing_compiler_is_reported_with_its_output(fresh_cache, monkeypatch, tmp_path):
    fake = tmp_path / "fake-cc"
    fake.write_text("#!/bin/sh\necho 'fake-cc: fatal error: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    failure = native_kernel.build_failure()
    assert "-march=native" in failure and "no space left" in failure  # every flag set tried, output kept
    assert not list(fresh_cache.glob("*.so"))


def test_a_failed_build_is_not_retried_in_the_process(fresh_cache, monkeypatch):
    monkeypatch.setenv("CC", "definitely-not-a-compiler")
    first = native_kernel.build_failure()
    monkeypatch.setattr(native_kernel, "_build", lambda: pytest.fail("retried a failed build"))
    assert native_kernel.build_failure() == first
    assert native_kernel.status() == f"not built: {first}"


def test_a_missing_compiler_is_named(fresh_cache, monkeypatch):
    monkeypatch.setenv("CC", "definitely-not-a-compiler")
    assert "'definitely-not-a-compiler' is not on PATH" in native_kernel.build_failure()
