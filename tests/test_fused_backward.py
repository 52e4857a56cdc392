"""Choosing between the eager and the fused backward (C kernel or torch.compile): modes, threshold, failures.

The numerics of the fused paths are tested with the eager one, against the float64 closed forms, through the
`transport_backend` fixture (test_estimator_gradients.py, test_estimators.py); the C kernel's own edges
(block and vector tails, layouts, threads, its build cache) in test_native_kernel.py.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import yaml

import estimators
from estimators import fused, native_kernel
from harness.runner import provenance

SMALL = (64, 8)
LARGE = (fused.FUSED_MIN_ELEMENTS // 32, 32)  # exactly the "auto" threshold


@pytest.fixture(autouse=True)
def _default_mode(monkeypatch):
    monkeypatch.delenv(fused.ENV, raising=False)
    estimators.set_fused_backward(None)
    yield
    estimators.set_fused_backward(None)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Spy on the C kernel (still running it); the list of (scale, radial_removed) calls."""
    calls = []
    real = native_kernel.rotation_backward

    def spy(g, e, q, scale, radial_removed, *args):
        calls.append((scale, radial_removed))
        return real(g, e, q, scale, radial_removed, *args)

    monkeypatch.setattr(native_kernel, "rotation_backward", spy)
    return calls


@pytest.fixture
def no_c_compiler(monkeypatch, tmp_path):
    """A machine without a C compiler (and an empty kernel cache): building the C kernel fails."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv(native_kernel.CACHE_ENV, str(tmp_path / "cache"))
    native_kernel._built_once.cache_clear()
    yield
    native_kernel._built_once.cache_clear()


@pytest.fixture
def compile_calls(monkeypatch):
    """Replace the compiler by a spy that runs the plain form eagerly; the list of (function, static) calls."""
    calls = []

    def fake_compiled(plain, static):
        calls.append((plain.__name__, static))
        return lambda g, e, q: plain(g, e, q, **dict(static))

    monkeypatch.setattr(fused, "_compiled", fake_compiled)
    return calls


def rotation_grad(shape, name="rotation", dtype=torch.float32, **params):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(*shape, generator=gen, dtype=dtype)
    e = (q + 0.3 * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()
    g = torch.randn(*shape, generator=gen, dtype=dtype)
    estimators.get(name, **params).transport(e, q).backward(g)
    return e.grad


def test_default_mode_is_auto():
    assert estimators.fused_backward_mode() == "auto"


def test_environment_variable_sets_the_mode(monkeypatch):
    monkeypatch.setenv(fused.ENV, " ON ")
    assert estimators.fused_backward_mode() == "on"
    monkeypatch.setenv(fused.ENV, "off")
    assert estimators.fused_backward_mode() == "off"


def test_set_fused_backward_overrides_the_environment_until_reset(monkeypatch):
    monkeypatch.setenv(fused.ENV, "off")
    estimators.set_fused_backward("on")
    assert estimators.fused_backward_mode() == "on"
    estimators.set_fused_backward(None)
    assert estimators.fused_backward_mode() == "off"


def test_invalid_environment_value_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(fused.ENV, "yes")
    with pytest.raises(ValueError, match=r"ROTATION_HARNESS_FUSED_BACKWARD.*'yes'.*auto, on, compiled, off"):
        estimators.fused_backward_mode()


def test_invalid_mode_is_refused_by_set_fused_backward():
    with pytest.raises(ValueError, match=r"set_fused_backward.*'fast'.*auto, on, compiled, off"):
        estimators.set_fused_backward("fast")


def test_auto_fuses_only_float32_at_or_above_the_threshold(compile_calls, kernel_calls):
    rotation_grad(SMALL)
    rotation_grad(LARGE, dtype=torch.float64)
    assert compile_calls == [] and kernel_calls == []
    rotation_grad(LARGE)
    rotation_grad(LARGE, name="reflection")
    rotation_grad(LARGE, name="rotation_gamma", gamma="inverse_sq_distance")
    rotation_grad(LARGE, name="rotation_radial_removed")
    assert kernel_calls == [("norm_ratio", False), ("inverse_sq_distance", False), ("norm_ratio", True)]
    assert compile_calls == [("_reflection_backward_plain", ())]  # the C kernel is the rotation family's


def test_off_never_fuses_on_always_does_and_compiled_never_uses_the_kernel(compile_calls, kernel_calls):
    estimators.set_fused_backward("off")
    rotation_grad(LARGE)
    assert compile_calls == [] and kernel_calls == []
    estimators.set_fused_backward("on")
    rotation_grad(SMALL)
    assert kernel_calls == [("norm_ratio", False)]
    rotation_grad(SMALL, dtype=torch.float64)  # the kernel is float32 only
    assert len(compile_calls) == 1
    estimators.set_fused_backward("compiled")
    rotation_grad(SMALL)
    assert len(kernel_calls) == 1 and len(compile_calls) == 2


def test_ste_and_decoder_aware_estimators_never_compile(compile_calls):
    estimators.set_fused_backward("on")
    rotation_grad(LARGE, name="ste")
    assert compile_calls == []


def _failing_compiler(monkeypatch):
    def compiled(plain, static):
        def broken(g, e, q):
            raise RuntimeError("no C++ compiler found")
        return broken

    monkeypatch.setattr(fused, "_compiled", compiled)


def test_auto_falls_back_to_compile_then_eager_with_one_warning_each(monkeypatch, no_c_compiler):
    estimators.set_fused_backward("off")
    want = rotation_grad(LARGE)
    estimators.set_fused_backward("auto")
    _failing_compiler(monkeypatch)
    with pytest.warns(RuntimeWarning) as caught:
        got = rotation_grad(LARGE)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "C kernel of the fused backward could not be built" in messages[0] and "no-such-cc" in messages[0]
    assert "fused backward disabled" in messages[1] and "no C++ compiler" in messages[1]
    assert torch.equal(got, want)
    assert "no-such-cc" in fused.kernel_failure() and "no C++ compiler" in fused.compile_failure()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second attempt
        assert torch.equal(rotation_grad(LARGE), want)


def test_auto_without_a_c_compiler_uses_torch_compile(no_c_compiler, compile_calls):
    with pytest.warns(RuntimeWarning, match="could not be built.*not on PATH"):
        rotation_grad(LARGE)
    assert compile_calls == [("_rotation_backward_plain", (("radial_removed", False), ("scale", "norm_ratio")))]


def test_on_raises_a_clear_error_when_the_kernel_cannot_be_built(no_c_compiler):
    estimators.set_fused_backward("on")
    with pytest.raises(RuntimeError, match="could not build its C kernel.*no-such-cc.*set "
                                           "ROTATION_HARNESS_FUSED_BACKWARD=compiled"):
        rotation_grad(SMALL)


def test_on_raises_even_after_auto_gave_up_on_the_kernel(no_c_compiler, compile_calls, monkeypatch):
    with pytest.warns(RuntimeWarning, match="could not be built"):
        rotation_grad(LARGE)  # auto: one warning, then torch.compile
    monkeypatch.setenv(fused.ENV, "on")  # switched through the environment, not set_fused_backward
    with pytest.raises(RuntimeError, match="could not build its C kernel"):
        rotation_grad(SMALL)


def test_on_raises_a_clear_error_when_compiling_fails(monkeypatch):
    estimators.set_fused_backward("on")
    _failing_compiler(monkeypatch)
    with pytest.raises(RuntimeError, match="could not compile _reflection_backward_plain.*Set "
                                           "ROTATION_HARNESS_FUSED_BACKWARD=off"):
        rotation_grad(SMALL, name="reflection")


@pytest.mark.parametrize("mode", ["auto", "compiled"])
def test_fuses_for_real_at_the_threshold_and_matches_eager(mode):
    """The real C kernel ("auto") and the real compiler at N·D = 2²¹ float32 (a large training batch's path)."""
    estimators.set_fused_backward("off")
    want = rotation_grad(LARGE)
    estimators.set_fused_backward(mode)
    got = rotation_grad(LARGE)
    assert fused.kernel_failure() is None and fused.compile_failure() is None
    err = (got - want).norm(dim=-1) / want.norm(dim=-1)
    assert 0 < err.max() < 1e-5  # a different order of float32 roundings: close, and not the eager result


def test_provenance_records_the_mode(monkeypatch):
    monkeypatch.setenv(fused.ENV, "off")
    assert provenance()["fused_backward"] == "off"


def test_cpu_profiles_of_the_suites_stay_eager_in_auto():
    """README: the suites' CPU settings never reach the auto threshold, so their results need no compiler."""
    from harness.suite import SUITES_DIR, load_suite
    from models.registry import get_family

    checked = 0
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        has_cpu_profile = "cpu" in (yaml.safe_load(path.read_text()).get("profiles") or {})
        suite = load_suite(path, profile="cpu" if has_cpu_profile else None)
        for spec in suite.runs:
            family = get_family(spec.config.model.family)
            if not hasattr(family, "latent_shape"):
                continue  # synthetic problems: a few hundred 2-D points
            latent = family.latent_shape(spec.config.model.params)
            elements = spec.config.training.batch_size * int(torch.Size(latent).numel())
            assert elements < fused.FUSED_MIN_ELEMENTS, (path.name, spec.label, latent)
            checked += 1
    assert checked > 50
