"""Estimator registry, forward values, degenerate points, autocast, and the Gumbel-softmax sampler.

Closed-form gradients at generic points, the paper's appendix properties and the decoder-aware estimators
are in tests/test_estimator_gradients.py.
"""
from __future__ import annotations

import math

import pytest
import torch

import estimators
from conftest import TRANSPORT_CONFIGS, config_id
from estimators.gumbel import anneal

TRANSPORT_IDS = [config_id(name, params) for name, params in TRANSPORT_CONFIGS]
#: Estimators whose forward is the custom autograd function returning an exact copy of q.
EXACT_COPY = {"rotation", "reflection", "rotation_unscaled", "rotation_gamma", "rotation_radial_removed"}
DIMS = [2, 3, 32, 256]
EPS = 1e-6


def build(config):
    name, params = config
    return estimators.get(name, **params)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

EXPECTED_NAMES = [
    "diveq",
    "exact",
    "gumbel",
    "hessian",
    "ibq",
    "nsvq",
    "reflection",
    "rotation",
    "rotation_gamma",
    "rotation_radial_removed",
    "rotation_through_r",
    "rotation_unscaled",
    "sf_diveq",
    "ste",
    "sync",
]


def test_registry_lists_exactly_the_estimators():
    assert estimators.names() == EXPECTED_NAMES


def test_transport_configs_cover_every_transport_estimator():
    transport = {n for n in estimators.names() if estimators.get(n).kind == "transport"}
    assert transport == {name for name, _ in TRANSPORT_CONFIGS}
    assert {n: estimators.get(n).kind for n in ("hessian", "exact", "gumbel")} == {
        "hessian": "decoder_aware",
        "exact": "decoder_aware",
        "gumbel": "sampling",
    }


def test_each_kind_says_whether_it_chooses_codes_and_gives_its_loss_at_a_code():
    """What the quantizer, the gradient diagnostics and the synthetic problems ask instead of the kind."""
    for name in estimators.names():
        est = estimators.get(name)
        assert est.chooses_codes == (est.kind == "sampling" or name in {"ibq", "sf_diveq"}), name
        assert isinstance(est, estimators.NearestCodeEstimator) != est.chooses_codes, name
    q = torch.randn(6, 3)
    e = (q + 0.1 * torch.randn(6, 3)).requires_grad_()
    g = torch.randn(6, 3)
    loss, reported = estimators.get("ste").loss_at_code(e, q, lambda z: (z * g).sum())
    assert loss is reported and float(loss.detach()) == pytest.approx(float((q * g).sum()), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, e)
    assert torch.equal(grad, g)
    loss, reported = estimators.get("exact").loss_at_code(e, q, lambda z: (z * z).sum())
    assert float(reported) == pytest.approx(float((q * q).sum()), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, e)
    torch.testing.assert_close(grad, 2 * e.detach(), rtol=1e-4, atol=1e-5)  # the autoencoder gradient
    with pytest.raises(TypeError, match="'gumbel' chooses its codes from logits.*transport or decoder_aware"):
        estimators.get("gumbel").loss_at_code(e, q, lambda z: z.sum())


def test_no_module_outside_estimators_branches_on_the_estimator_kind():
    """Each kind brings its behaviour through its class (estimators/base.py); `kind` is a label."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    branching = re.compile(r"""estimator\.kind\s*[!=]=|kind\s*[!=]=\s*["'](transport|decoder_aware|sampling)["']""")
    found = [f"{path.relative_to(root)}:{number}" for folder in ("models", "harness")
             for path in sorted((root / folder).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if branching.search(line)]
    assert found == []


def test_registered_instances_carry_their_name():
    for name in estimators.names():
        est = estimators.get(name)
        assert est.name == name
        assert name in est.describe()


@pytest.mark.parametrize(
    "typo, closest", [("rotaton", "rotation"), ("reflecton", "reflection"), ("hesian", "hessian"), ("gumble", "gumbel")]
)
def test_unknown_name_raises_value_error_with_valid_names_and_closest(typo, closest):
    with pytest.raises(ValueError) as info:
        estimators.get(typo)
    message = str(info.value)
    assert f"Did you mean {closest!r}" in message
    for name in EXPECTED_NAMES:
        assert name in message


def test_unknown_name_with_no_close_match_still_lists_names():
    with pytest.raises(ValueError) as info:
        estimators.get("zzzzzzzz")
    message = str(info.value)
    assert "Did you mean" not in message
    assert all(name in message for name in EXPECTED_NAMES)


@pytest.mark.parametrize(
    "name, bad, valid",
    [
        ("rotation_gamma", "gama", ["gamma"]),
        ("exact", "kapa", ["kappa"]),
        (
            "gumbel",
            "temprature_start",
            ["hard", "temperature_start", "temperature_end", "temperature_schedule", "kl_weight", "kl_schedule"],
        ),
    ],
)
def test_unknown_parameter_raises_type_error_naming_valid_ones(name, bad, valid):
    with pytest.raises(TypeError) as info:
        estimators.get(name, **{bad: 1})
    message = str(info.value)
    assert repr(bad) in message
    for parameter in valid:
        assert parameter in message
    assert estimators.parameter_names(name) == valid


@pytest.mark.parametrize("name", ["ste", "rotation", "hessian"])
def test_parameterless_estimators_report_no_valid_parameters(name):
    """Estimators without their own __init__ inherit object.__init__(self, /, *args, **kwargs); the registry
    must not report 'args'/'kwargs' as parameters, and get('rotation', args=1) must be refused by it."""
    assert estimators.parameter_names(name) == []
    with pytest.raises(TypeError) as info:
        estimators.get(name, gamma=1)
    assert "Valid parameters: (none)" in str(info.value)
    with pytest.raises(TypeError) as info:
        estimators.get(name, args=1)
    assert "has no parameter 'args'" in str(info.value)


@pytest.mark.parametrize(
    "name, params",
    [
        ("rotation_gamma", {"gamma": "two"}),
        ("exact", {"kappa": 0.0}),
        ("exact", {"kappa": -1e-6}),
        ("gumbel", {"temperature_schedule": "cosin"}),
        ("gumbel", {"kl_schedule": "exp"}),
        ("gumbel", {"temperature_end": 0.0}),
    ],
)
def test_invalid_parameter_values_raise_value_error(name, params):
    with pytest.raises(ValueError):
        estimators.get(name, **params)


# --------------------------------------------------------------------------------------------------
# Forward value: q_tilde == q
# --------------------------------------------------------------------------------------------------


def degenerate_cases(dim: int, dtype=torch.float64, tokens: int = 3):
    """(label, e, q) at the degenerate points (e opposite q, e along q, ‖e‖ → 0; paper §4.2, A.8)."""
    q = torch.randn(tokens, dim, dtype=dtype) * 1.5
    noise = torch.randn(tokens, dim, dtype=dtype)
    noise = noise / noise.norm(dim=-1, keepdim=True)
    q_norm = q.norm(dim=-1, keepdim=True)
    small = torch.randn(tokens, dim, dtype=dtype)
    small = 1e-8 * small / small.norm(dim=-1, keepdim=True)  # norm 1e-8 < EPS
    return [
        ("e_zero", torch.zeros_like(q), q),
        ("e_tiny", small, q),
        ("q_zero", q, torch.zeros_like(q)),
        ("q_tiny", q, small),
        ("both_zero", torch.zeros_like(q), torch.zeros_like(q)),
        ("e_eq_q", q.clone(), q),
        ("e_eq_2q", 2.0 * q, q),
        ("e_near_q", q + 1e-7 * q_norm * noise, q),  # 1 - cos ~ 1e-14 < EPS
        ("e_neg_q", -q, q),
        ("e_neg_half_q", -0.5 * q, q),
        ("e_near_neg_q", -q + 1e-7 * q_norm * noise, q),  # 1 + cos ~ 1e-14 < EPS
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("config", TRANSPORT_CONFIGS, ids=TRANSPORT_IDS)
def test_forward_value_is_q_on_random_inputs(config, dim, dtype):
    est = build(config)
    e = (torch.randn(64, dim) * torch.rand(64, 1) * 3).to(dtype).requires_grad_()
    q = torch.randn(64, dim).to(dtype)
    out = est.transport(e, q)
    assert out.dtype == dtype and out.shape == q.shape
    if config[0] in EXACT_COPY:
        assert torch.equal(out, q)
    else:
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out, q, rtol=0, atol=tol * float(q.abs().max() + e.detach().abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("config", TRANSPORT_CONFIGS, ids=TRANSPORT_IDS)
def test_forward_value_and_finite_gradients_at_degenerate_points(config, dim, dtype):
    est = build(config)
    for label, e0, q in degenerate_cases(dim, dtype):
        e = e0.clone().requires_grad_()
        out = est.transport(e, q)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out, q, rtol=0, atol=tol * (1 + float(q.abs().max())), msg=label)
        out.backward(torch.randn_like(q))
        assert e.grad is not None, label
        assert torch.isfinite(e.grad).all(), f"{config} {label}: non-finite gradient"


def _fallback_cases_for_comparison(name: str, params: dict, dtype):
    """Degenerate cases skipped when comparing with the float64 documented fallback (none at present)."""
    return set()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize(
    "config",
    [c for c in TRANSPORT_CONFIGS if c[0] != "rotation_through_r"],
    ids=[i for c, i in zip(TRANSPORT_CONFIGS, TRANSPORT_IDS) if c[0] != "rotation_through_r"],
)
def test_gradients_at_degenerate_points_equal_documented_fallback(config, dim, dtype, reference_gradient, transport_backend):
    """STE g when a norm is below EPS; e = −q drops rrᵀ (R = I + 2q̂êᵀ); reflection with e ∥ q gives λg."""
    name, params = config
    est = build(config)
    skip = _fallback_cases_for_comparison(name, params, dtype)
    for label, e0, q in degenerate_cases(dim, dtype):
        if label in skip:
            continue
        e = e0.clone().requires_grad_()
        g = torch.randn_like(q)
        est.transport(e, q).backward(g)
        expected = reference_gradient(name, params, e0, q, g)
        scale = 1.0 + float(expected.abs().max())
        tol = 2e-5 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(e.grad.double(), expected, rtol=0, atol=tol * scale, msg=f"{label}")


@pytest.mark.parametrize("dim", [2, 3, 32])
def test_documented_fallbacks_in_words(dim, transport_backend):
    """The fallbacks spelled out by hand (not via the reference), float64."""
    q = torch.randn(4, dim, dtype=torch.float64)
    g = torch.randn(4, dim, dtype=torch.float64)
    q_hat = q / q.norm(dim=-1, keepdim=True)
    b = (q_hat * g).sum(-1, keepdim=True)

    def grad_of(name, e0, q_, **params):
        e = e0.clone().requires_grad_()
        estimators.get(name, **params).transport(e, q_).backward(g)
        return e.grad

    # e = −q exactly: rotation gradient λ(g − 2q̂(q̂ᵀg)), λ = ‖q‖/‖e‖ (=1 for e = −q, = 2 for e = −q/2).
    torch.testing.assert_close(grad_of("rotation", -q, q), g - 2 * q_hat * b, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_of("rotation", -0.5 * q, q), 2 * (g - 2 * q_hat * b), rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_of("rotation_unscaled", -0.5 * q, q), g - 2 * q_hat * b, rtol=0, atol=1e-12)
    # reflection with e along q: λg.
    torch.testing.assert_close(grad_of("reflection", 4.0 * q, q), 0.25 * g, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_of("reflection", q.clone(), q), g, rtol=0, atol=1e-12)
    # ‖e‖ = 0 or ‖q‖ = 0: straight-through g for every rotation-family estimator and the reflection.
    for name in ("rotation", "reflection", "rotation_unscaled", "rotation_radial_removed", "rotation_gamma"):
        assert torch.equal(grad_of(name, torch.zeros_like(q), q), g)
        assert torch.equal(grad_of(name, q, torch.zeros_like(q)), g)
    # γ = 1/(8‖q − e‖²) with the squared distance floored at EPS: e = q gives 1/(8e-6) = 125000.
    torch.testing.assert_close(grad_of("rotation_gamma", q.clone(), q), 125000.0 * g, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------------
# Autocast
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("config", TRANSPORT_CONFIGS, ids=TRANSPORT_IDS)
def test_autocast_bfloat16_keeps_input_dtype_value_and_gradient(config, dim):
    """float32 e under autocast: random tokens plus every degenerate point, all in one batch."""
    est = build(config)
    q_rand = torch.randn(16, dim)
    cases = degenerate_cases(dim, torch.float32, tokens=1)
    q = torch.cat([q_rand] + [c[2] for c in cases])
    e_data = torch.cat([q_rand + 0.3 * torch.randn(16, dim)] + [c[1] for c in cases])
    g = torch.randn_like(q)

    e_plain = e_data.clone().requires_grad_()
    est.transport(e_plain, q).backward(g)

    e = e_data.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = est.transport(e, q)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, q, rtol=0, atol=1e-5 * (1 + float(q.abs().max())))
    out.backward(g)
    assert e.grad.dtype == torch.float32
    assert torch.isfinite(e.grad).all()
    # The estimator arithmetic runs in float32 under autocast: same gradient as without autocast.
    torch.testing.assert_close(e.grad, e_plain.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", TRANSPORT_CONFIGS, ids=TRANSPORT_IDS)
def test_autocast_bfloat16_input_from_a_bf16_layer(config):
    """e produced in bfloat16 by an autocast Linear: output stays bfloat16, value q (bf16), finite grads."""
    est = build(config)
    layer = torch.nn.Linear(8, 32)
    x = torch.randn(16, 8)
    q = torch.randn(16, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        e = layer(x)
        assert e.dtype == torch.bfloat16
        out = est.transport(e, q)
        assert out.dtype == torch.bfloat16
        loss = (out.float() * torch.randn(16, 32)).sum()
    torch.testing.assert_close(out.float(), q.to(torch.bfloat16).float(), rtol=2e-2, atol=2e-2)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert layer.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Nothing flows back to q
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", TRANSPORT_CONFIGS, ids=TRANSPORT_IDS)
def test_no_gradient_reaches_q(config):
    est = build(config)
    e = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    q = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    est.transport(e, q).backward(torch.randn(10, 5, dtype=torch.float64))
    assert q.grad is None or torch.count_nonzero(q.grad) == 0
    assert e.grad is not None


@pytest.mark.parametrize("name", ["hessian", "exact"])
def test_no_gradient_reaches_q_through_decoder_aware(name):
    decoder = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    e = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    q = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    loss, _ = estimators.get(name).decoder_loss(e, q, lambda z: ((decoder(z) - x) ** 2).sum())
    loss.backward()
    assert q.grad is None or torch.count_nonzero(q.grad) == 0
    assert e.grad is not None and e.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(EXACT_COPY))
def test_transport_rejects_mismatched_shapes(name):
    est = estimators.get(name)
    with pytest.raises(ValueError):
        est.transport(torch.randn(4, 3), torch.randn(4, 2))


# --------------------------------------------------------------------------------------------------
# Gumbel-softmax (§5.1 baseline)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_gumbel_temperature_and_kl_schedules_hit_their_endpoints(schedule):
    est = estimators.get("gumbel", temperature_schedule=schedule, kl_schedule=schedule)
    assert est.temperature(0.0) == pytest.approx(1.0, abs=1e-15)
    assert est.temperature(1.0) == pytest.approx(1.0 / 16, abs=1e-15)
    assert est.kl_weight_at(0.0) == pytest.approx(0.0, abs=1e-18)
    assert est.kl_weight_at(1.0) == pytest.approx(5e-4, abs=1e-18)
    # Clamped outside [0, 1]; monotone in between; midpoint is the mean of the endpoints for both shapes.
    assert est.temperature(-3.0) == est.temperature(0.0) and est.temperature(7.0) == est.temperature(1.0)
    grid = [i / 20 for i in range(21)]
    temps = [est.temperature(p) for p in grid]
    kls = [est.kl_weight_at(p) for p in grid]
    assert all(a > b for a, b in zip(temps, temps[1:]))
    assert all(a < b for a, b in zip(kls, kls[1:]))
    assert est.temperature(0.5) == pytest.approx((1.0 + 1.0 / 16) / 2, rel=1e-12)
    p = 0.3
    if schedule == "cosine":
        expected = 1.0 / 16 + 0.5 * (1.0 - 1.0 / 16) * (1 + math.cos(math.pi * p))
    else:
        expected = 1.0 + (1.0 / 16 - 1.0) * p
    assert est.temperature(p) == pytest.approx(expected, rel=1e-12)
    assert anneal(2.0, 5.0, 0.4, "constant") == 5.0


def test_gumbel_hard_samples_are_exact_codebook_rows():
    est = estimators.get("gumbel")
    codebook = torch.randn(12, 6)
    logits = torch.randn(300, 12, requires_grad=True)
    for progress in (0.0, 0.5, 1.0):
        sample = est.sample(logits, codebook, progress, training=True)
        assert sample.indices.shape == (300,)
        assert sample.indices.dtype == torch.long
        assert ((sample.indices >= 0) & (sample.indices < 12)).all()
        assert torch.equal(sample.decoder_input, codebook[sample.indices])
        assert sample.temperature == est.temperature(progress)
    # Sampling is stochastic in training mode: with flat logits the picks vary.
    assert len(torch.unique(sample.indices)) > 3


def test_gumbel_soft_samples_are_mixtures():
    est = estimators.get("gumbel", hard=False)
    codebook = torch.randn(5, 3)
    sample = est.sample(torch.zeros(50, 5), codebook, 0.0, training=True)
    # A soft sample at temperature 1 is a strict convex combination, never exactly a code.
    distances = torch.cdist(sample.decoder_input, codebook).min(-1).values
    assert (distances > 1e-6).all()


def test_gumbel_hard_sampling_frequencies_follow_softmax_at_temperature_one():
    """Gumbel-max: hard samples at τ = 1 are draws from softmax(logits)."""
    est = estimators.get("gumbel", temperature_schedule="constant", temperature_end=1.0)
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    logits = probs.log().expand(40000, 4).contiguous()
    sample = est.sample(logits, torch.eye(4), 0.0, training=True)
    freq = torch.bincount(sample.indices, minlength=4).float() / 40000
    # 4.5 standard errors of a binomial proportion.
    assert ((freq - probs).abs() <= 4.5 * (probs * (1 - probs) / 40000).sqrt()).all(), freq


def test_gumbel_gradient_reaches_logits_and_codebook():
    est = estimators.get("gumbel")
    codebook = torch.randn(7, 4, requires_grad=True)
    logits = torch.randn(20, 7, requires_grad=True)
    sample = est.sample(logits, codebook, 0.3, training=True)
    ((sample.decoder_input * torch.randn(20, 4)).sum() + sample.aux_loss).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    assert codebook.grad is not None and codebook.grad.abs().sum() > 0


def test_gumbel_aux_loss_is_weighted_kl_to_uniform():
    est = estimators.get("gumbel")
    logits = torch.randn(30, 9, dtype=torch.float64)
    codebook = torch.randn(9, 2, dtype=torch.float64)
    for progress in (0.0, 0.25, 1.0):
        sample = est.sample(logits, codebook, progress, training=False)
        p = logits.softmax(-1)
        kl = (p * (p * 9).log()).sum(-1).mean()
        assert float(sample.aux_loss) == pytest.approx(est.kl_weight_at(progress) * float(kl), rel=1e-8, abs=1e-18)
    assert float(est.sample(logits, codebook, 0.0, training=False).aux_loss) == 0.0
    uniform = est.sample(torch.zeros(4, 9), torch.randn(9, 2), 1.0, training=False)
    assert abs(float(uniform.aux_loss)) < 1e-9


def test_gumbel_eval_mode_is_deterministic_argmax():
    est = estimators.get("gumbel")
    codebook = torch.randn(10, 3)
    logits = torch.randn(64, 10)
    first = est.sample(logits, codebook, 0.7, training=False)
    second = est.sample(logits, codebook, 0.7, training=False)
    assert torch.equal(first.indices, logits.argmax(-1))
    assert torch.equal(first.indices, second.indices)
    assert torch.equal(first.decoder_input, codebook[logits.argmax(-1)])
    assert torch.equal(first.decoder_input, second.decoder_input)
