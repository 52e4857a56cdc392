"""Gradients of the estimators against closed forms, and the paper's analytic properties (§3, §4.2-§4.3, A.4-A.9).

Every reference is built independently in float64 inside the tests: explicit D×D matrices per token
(conftest.reference_transport_gradient), torch.autograd.functional.hessian for the Hessian approximation,
and plain autograd through a small decoder for the exact-gradient estimator.
"""
from __future__ import annotations

import math

import pytest
import torch

import estimators
from conftest import TRANSPORT_CONFIGS, config_id

F64 = torch.float64
EPS = 1e-6

#: Transport configurations with a matrix closed form (rotation_through_r is tested on its own).
CLOSED_FORM_CONFIGS = [c for c in TRANSPORT_CONFIGS if c[0] != "rotation_through_r"]
CLOSED_FORM_IDS = [config_id(name, params) for name, params in CLOSED_FORM_CONFIGS]


def random_pairs(tokens: int, dim: int, dtype=F64):
    """Encoder outputs e and codes q with varied norms and every kind of angle (acute, obtuse, near ±q)."""
    q = torch.randn(tokens, dim, dtype=dtype) * (0.5 + 2.0 * torch.rand(tokens, 1, dtype=dtype))
    e = torch.randn(tokens, dim, dtype=dtype) * (0.2 + 3.0 * torch.rand(tokens, 1, dtype=dtype))
    # A few tokens in the same cell as q (small quantization error) and a few strongly obtuse ones.
    e[: tokens // 4] = q[: tokens // 4] + 0.1 * torch.randn(tokens // 4, dim, dtype=dtype)
    e[tokens // 4 : tokens // 2] = -0.7 * q[tokens // 4 : tokens // 2] + 0.05 * torch.randn(
        tokens // 2 - tokens // 4, dim, dtype=dtype
    )
    return e, q


def transport_grad(name, params, e, q, g):
    e = e.clone().requires_grad_()
    estimators.get(name, **params).transport(e, q).backward(g)
    return e.grad


def explicit_rotation(e_i, q_i):
    """R = I − 2rrᵀ + 2q̂êᵀ, r = (ê + q̂)/‖ê + q̂‖ (§4.2), and λ = ‖q‖/‖e‖, for one token (float64)."""
    e_hat, q_hat = e_i / e_i.norm(), q_i / q_i.norm()
    r = (e_hat + q_hat) / (e_hat + q_hat).norm()
    eye = torch.eye(e_i.numel(), dtype=e_i.dtype)
    return eye - 2 * torch.outer(r, r) + 2 * torch.outer(q_hat, e_hat), q_i.norm() / e_i.norm()


# --------------------------------------------------------------------------------------------------
# Closed forms: STE g, rotation λRᵀg, reflection λHᵀg, A.9 variants, radial removed
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3, 8, 32])
@pytest.mark.parametrize("config", CLOSED_FORM_CONFIGS, ids=CLOSED_FORM_IDS)
def test_gradient_equals_explicit_matrix_closed_form(config, dim, reference_gradient, transport_backend):
    name, params = config
    e, q = random_pairs(16, dim)
    g = torch.randn(16, dim, dtype=F64)
    grad = transport_grad(name, params, e, q, g)
    assert grad.dtype == F64
    expected = reference_gradient(name, params, e, q, g)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dim", [3, 16])
def test_closed_forms_by_hand_for_one_token(dim):
    """The named closed forms, written out once more without the shared reference."""
    e, q = random_pairs(8, dim)
    e, q = e[5], q[5]  # a generic token
    g = torch.randn(dim, dtype=F64)
    rot, lam = explicit_rotation(e, q)
    e_hat, q_hat = e / e.norm(), q / q.norm()
    w = (e_hat - q_hat) / (e_hat - q_hat).norm()
    house = torch.eye(dim, dtype=F64) - 2 * torch.outer(w, w)
    gamma = 1.0 / (8.0 * ((q - e) ** 2).sum())
    expected = {
        ("ste", None): g,
        ("rotation", None): lam * rot.T @ g,
        ("reflection", None): lam * house.T @ g,
        ("rotation_unscaled", None): rot.T @ g,
        ("rotation_gamma", "norm_ratio"): lam * rot.T @ g,
        ("rotation_gamma", "one"): rot.T @ g,
        ("rotation_gamma", "inverse_sq_distance"): gamma * rot.T @ g,
        ("rotation_radial_removed", None): lam * (torch.eye(dim, dtype=F64) - torch.outer(e_hat, e_hat)) @ rot.T @ g,
    }
    for (name, gamma_name), want in expected.items():
        params = {"gamma": gamma_name} if gamma_name else {}
        got = transport_grad(name, params, e[None], q[None], g[None])[0]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=f"{name} {gamma_name}")
    # H is a reflection: orthogonal with det −1, maps ê to q̂.
    torch.testing.assert_close(house @ e_hat, q_hat, rtol=0, atol=1e-12)
    assert torch.linalg.det(house).item() == pytest.approx(-1.0, abs=1e-10)


def test_rotation_gamma_aliases_are_the_same_estimators():
    e, q = random_pairs(32, 6)
    g = torch.randn(32, 6, dtype=F64)
    assert torch.equal(transport_grad("rotation_gamma", {"gamma": "norm_ratio"}, e, q, g),
                       transport_grad("rotation", {}, e, q, g))
    assert torch.equal(transport_grad("rotation_gamma", {"gamma": "one"}, e, q, g),
                       transport_grad("rotation_unscaled", {}, e, q, g))
    assert estimators.get("rotation_gamma").gamma == "inverse_sq_distance"  # default: the A.9.2 plot


def test_radial_removed_gradient_has_no_radial_component():
    e, q = random_pairs(64, 8)
    g = torch.randn(64, 8, dtype=F64)
    grad = transport_grad("rotation_radial_removed", {}, e, q, g)
    full = transport_grad("rotation", {}, e, q, g)
    e_hat = e / e.norm(dim=-1, keepdim=True)
    torch.testing.assert_close((grad * e_hat).sum(-1), torch.zeros(64, dtype=F64), rtol=0, atol=1e-12)
    # ... and it is the rotation gradient minus its radial part.
    torch.testing.assert_close(grad, full - e_hat * (full * e_hat).sum(-1, keepdim=True), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 3, 32])
def test_float32_gradients_match_float64_reference_at_generic_points(dim, reference_gradient, transport_backend):
    """The production dtype: float32 closed forms agree with the float64 reference at ordinary points."""
    # Angles bounded away from 0 and π (1 ± cos ≥ 0.05): near e ∥ ±q see the float32 xfails below.
    pairs = [_at_cosine(dim, float(c), tokens=1) for c in torch.empty(64).uniform_(-0.95, 0.95)]
    e, q = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    e = e * torch.empty(64, 1).uniform_(0.3, 3.0)
    g = torch.randn(64, dim)
    for name, params in CLOSED_FORM_CONFIGS:
        got = transport_grad(name, params, e, q, g)
        assert got.dtype == torch.float32
        want = reference_gradient(name, params, e, q, g)
        err = (got.double() - want).norm(dim=-1) / want.norm(dim=-1)
        assert err.max() < 1e-4, (name, params, err.max().item())


# --------------------------------------------------------------------------------------------------
# A.7: keeping λ and R in the graph gives a zero gradient
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3, 8, 32])
def test_rotation_through_r_gradient_vanishes_in_the_cell(dim):
    """λ(e)R(e)e = q for every e (A.7), so the exact derivative through λ and R is zero."""
    e, q = random_pairs(32, dim)
    g = torch.randn(32, dim, dtype=F64)
    e_leaf = e.clone().requires_grad_()
    out = estimators.get("rotation_through_r").transport(e_leaf, q)
    torch.testing.assert_close(out, q, rtol=0, atol=1e-12)
    out.backward(g)
    assert e_leaf.grad is not None  # the graph exists ...
    lam = q.norm(dim=-1) / e.norm(dim=-1)
    # ... and its gradient is zero up to rounding (the rotation trick's would be λ‖g‖ in norm). Rounding is
    # amplified like 1/‖ê + q̂‖ near e = −q (the normalisation of ê + q̂), so those tokens only need be finite.
    assert torch.isfinite(e_leaf.grad).all()
    bound = (1 + lam) * g.norm(dim=-1)
    away = 1 + (e * q).sum(-1) / (e.norm(dim=-1) * q.norm(dim=-1)) > 1e-4
    assert away.sum() >= 24
    assert (e_leaf.grad.norm(dim=-1)[away] <= 1e-11 * bound[away]).all()
    assert (e_leaf.grad[:8].norm(dim=-1) <= 1e-13 * bound[:8]).all()
    # In float32, for tokens close to their code (the usual VQ situation), it is rounding noise.
    near = slice(0, 8)  # random_pairs puts e = q + 0.1·noise in the first quarter
    e32 = e[near].float().requires_grad_()
    estimators.get("rotation_through_r").transport(e32, q[near].float()).backward(g[near].float())
    assert (e32.grad.double().norm(dim=-1) <= 1e-5 * lam[near] * g[near].norm(dim=-1)).all()


# --------------------------------------------------------------------------------------------------
# A.5: the explicit R, and the efficient form
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3, 8, 32])
def test_explicit_rotation_is_orthogonal_det_one_and_aligns_e_with_q(dim):
    e, q = random_pairs(12, dim)
    eye = torch.eye(dim, dtype=F64)
    for e_i, q_i in zip(e, q):
        if 1 + torch.dot(e_i, q_i) / (e_i.norm() * q_i.norm()) < 1e-3:
            continue  # r = (ê + q̂)/‖ê + q̂‖ is ill-conditioned at e = −q (the documented fallback applies)
        rot, lam = explicit_rotation(e_i, q_i)
        torch.testing.assert_close(rot @ rot.T, eye, rtol=0, atol=1e-12)
        torch.testing.assert_close(rot.T @ rot, eye, rtol=0, atol=1e-12)
        assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-9)
        torch.testing.assert_close(rot @ (e_i / e_i.norm()), q_i / q_i.norm(), rtol=0, atol=1e-12)
        torch.testing.assert_close(lam * rot @ e_i, q_i, rtol=0, atol=1e-12)
        # The efficient form (§4.2): λ[e − 2(rᵀe)r + 2(êᵀe)q̂] applies R without building it.
        e_hat, q_hat = e_i / e_i.norm(), q_i / q_i.norm()
        r = (e_hat + q_hat) / (e_hat + q_hat).norm()
        efficient = lam * (e_i - 2 * torch.dot(r, e_i) * r + 2 * torch.dot(e_hat, e_i) * q_hat)
        torch.testing.assert_close(efficient, q_i, rtol=0, atol=1e-12)
        # R only acts in span(e, q): a vector orthogonal to both is left unchanged.
        if dim >= 3:
            v = torch.randn(dim, dtype=F64)
            basis, _ = torch.linalg.qr(torch.stack([e_i, q_i], dim=1))
            v = v - basis @ (basis.T @ v)
            torch.testing.assert_close(rot @ v, v, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# A.6: angle and norm preservation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3, 16, 64])
def test_rotation_preserves_the_angle_between_gradient_and_vector(dim):
    e, q = random_pairs(400, dim)
    g = torch.randn(400, dim, dtype=F64)
    grad = transport_grad("rotation", {}, e, q, g)

    def cos(a, b):
        return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))

    # Exclude the documented fallback region 1 + cos < EPS (there R is replaced by I + 2q̂êᵀ, not orthogonal).
    regular = 1 + cos(e, q) > 1e-5
    assert regular.sum() > 350
    torch.testing.assert_close(cos(grad, e)[regular], cos(g, q)[regular], rtol=0, atol=1e-10)
    lam = q.norm(dim=-1) / e.norm(dim=-1)
    torch.testing.assert_close(grad.norm(dim=-1)[regular], (lam * g.norm(dim=-1))[regular], rtol=1e-10, atol=0)
    # With ‖e‖ = ‖q‖ (A.6's setting) the norm is preserved exactly: ‖∇_e L‖ = ‖g‖.
    e_same = e / e.norm(dim=-1, keepdim=True) * q.norm(dim=-1, keepdim=True)
    grad_same = transport_grad("rotation", {}, e_same, q, g)
    torch.testing.assert_close(grad_same.norm(dim=-1)[regular], g.norm(dim=-1)[regular], rtol=1e-10, atol=0)
    # Not true of the STE: its gradient keeps g's angle to q, not to e.
    assert (cos(g, e) - cos(g, q)).abs().max() > 0.1


# --------------------------------------------------------------------------------------------------
# A.4: far from the origin the rotation trick tends to the STE
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 8])
def test_rotation_tends_to_ste_far_from_origin(dim):
    q0 = torch.randn(256, dim, dtype=F64)
    e0 = q0 + 0.5 * torch.randn(256, dim, dtype=F64)
    g = torch.randn(256, dim, dtype=F64)
    cosines, rel_diffs = [], []
    for offset in (0.0, 10.0, 100.0, 1000.0):
        e, q = e0 + offset, q0 + offset  # +offset in every dimension (Fig. 10 uses +10)
        rot = transport_grad("rotation", {}, e, q, g)
        ste = transport_grad("ste", {}, e, q, g)
        assert torch.equal(ste, g)
        cos = (rot * ste).sum(-1) / (rot.norm(dim=-1) * ste.norm(dim=-1))
        cosines.append(cos)
        rel_diffs.append(((rot - ste).norm(dim=-1) / ste.norm(dim=-1)))
    means = [c.mean().item() for c in cosines]
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert cosines[-1].min() > 0.999
    diffs = [d.mean().item() for d in rel_diffs]
    assert all(a > b for a, b in zip(diffs, diffs[1:])), diffs
    # For offsets >= 10 every token improves, and the difference shrinks like 1/offset.
    for before, after in zip(rel_diffs[1:], rel_diffs[2:]):
        assert (after < before).all()
    assert 0.09 < (rel_diffs[3] / rel_diffs[2]).mean() < 0.11  # asymptotically exactly 1/10
    assert rel_diffs[-1].max() < 2e-3


# --------------------------------------------------------------------------------------------------
# §4.3: push / pull of points inside one Voronoi cell
# --------------------------------------------------------------------------------------------------


def pairwise(points):
    return torch.cdist(points, points)


@pytest.mark.parametrize("theta", [0.0, math.pi / 6, math.pi / 3, 2 * math.pi / 3, 5 * math.pi / 6, math.pi])
def test_push_pull_within_one_cell_in_2d(theta):
    """Points on the circle of radius ‖q‖ around q's direction; g at angle θ to q; update e − η∇_e.

    STE: every point moves by −ηg, so pairwise distances are kept exactly. Rotation: with ‖e‖ = ‖q‖ we have
    e_i = R_iᵀq and ∇_i = R_iᵀg, so e_i − η∇_i = R_iᵀ(q − ηg): in 2-D every point lands on the circle of radius
    ‖q − ηg‖ at its old angular offset, i.e. all pairwise distances scale by ‖q − ηg‖/‖q‖.
    Hence, under the *descent* update, g·q > 0 (θ < π/2) contracts the cell (pull) and g·q < 0 (θ > π/2)
    spreads it (push), and the change grows with the pair's angular separation.
    The paper words §4.3/Fig. 5 with "the gradient" meaning the direction the points move ("outwards-pointing
    gradients" push, l. 543): its "∇_q L and q point in the same direction → pushed away" is our θ > π/2,
    where −∇ (the motion) points along q. Under e − η∇ with g along q the points are pulled together.
    """
    alpha, radius, eta = 0.4, 2.0, 0.1
    q = radius * torch.tensor([[math.cos(alpha), math.sin(alpha)]], dtype=F64)
    offsets = torch.linspace(-0.7, 0.7, 9, dtype=F64)
    e = radius * torch.stack([torch.cos(alpha + offsets), torch.sin(alpha + offsets)], dim=-1)
    g_one = torch.tensor([[math.cos(alpha + theta), math.sin(alpha + theta)]], dtype=F64)
    g = g_one.expand(9, 2)
    q_rep = q.expand(9, 2)

    before = pairwise(e)
    after_ste = pairwise(e - eta * transport_grad("ste", {}, e, q_rep, g))
    after_rot = pairwise(e - eta * transport_grad("rotation", {}, e, q_rep, g))
    off_diagonal = ~torch.eye(9, dtype=torch.bool)

    torch.testing.assert_close(after_ste, before, rtol=0, atol=1e-12)  # STE: exactly 0 change
    factor = float((q - eta * g_one).norm() / q.norm())
    torch.testing.assert_close(after_rot, before * factor, rtol=1e-12, atol=1e-12)

    change = (after_rot - before)[off_diagonal]
    mean_change = change.mean().item()
    if theta < math.pi / 2:
        assert mean_change < -1e-3  # pull: g·q > 0 contracts under e − η∇
        assert (change < 0).all()
    else:
        assert mean_change > 1e-3  # push: g·q < 0 spreads under e − η∇
        assert (change > 0).all()
    # Pairs with larger angular separation change more (|Δd| ∝ d).
    separation = (offsets[:, None] - offsets[None, :]).abs()[off_diagonal]
    order = torch.argsort(separation)
    assert (change.abs()[order].diff() >= -1e-12).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_push_pull_with_radial_gradient_in_8d(sign):
    """g = ±q̂: R_iᵀq̂ = ê_i, so the rotation update is purely radial and scales all distances by (‖q‖ ∓ η)/‖q‖."""
    dim, radius, eta = 8, 3.0, 0.2
    q = torch.randn(1, dim, dtype=F64)
    q = radius * q / q.norm()
    e = q + 0.8 * torch.randn(12, dim, dtype=F64)
    e = radius * e / e.norm(dim=-1, keepdim=True)  # same norm: λ = 1
    g = (sign * q / radius).expand(12, dim)
    before = pairwise(e)
    after_ste = pairwise(e - eta * transport_grad("ste", {}, e, q.expand(12, dim), g))
    after_rot = pairwise(e - eta * transport_grad("rotation", {}, e, q.expand(12, dim), g))
    torch.testing.assert_close(after_ste, before, rtol=0, atol=1e-12)
    torch.testing.assert_close(after_rot, before * (radius - sign * eta) / radius, rtol=1e-12, atol=1e-12)
    mean_change = (after_rot - before).sum() / (12 * 11)
    assert mean_change * sign < 0  # g·q > 0 → contraction, g·q < 0 → expansion


# --------------------------------------------------------------------------------------------------
# Hessian approximation (§3, A.3)
# --------------------------------------------------------------------------------------------------


def make_decoder(tokens: int, dim: int, mixing: bool, out: int = 4):
    """A tanh MLP in float64; `mixing` decodes all tokens jointly so the Hessian couples tokens."""
    torch.manual_seed(1)
    width_in = tokens * dim if mixing else dim
    net = torch.nn.Sequential(torch.nn.Linear(width_in, 6), torch.nn.Tanh(), torch.nn.Linear(6, out)).to(F64)
    x = torch.randn(1 if mixing else tokens, out, dtype=F64)

    def loss_of(z):
        decoded = net(z.reshape(1, -1)) if mixing else net(z)
        return ((decoded - x) ** 2).sum()

    return net, loss_of


@pytest.mark.parametrize("mixing", [False, True], ids=["per_token", "mixing"])
def test_hessian_estimator_matches_autograd_hessian(mixing):
    tokens, dim = 3, 2
    net, loss_of = make_decoder(tokens, dim, mixing)
    q = torch.randn(tokens, dim, dtype=F64)
    e0 = q + 0.3 * torch.randn(tokens, dim, dtype=F64)
    e = e0.clone().requires_grad_()

    loss, reported = estimators.get("hessian").decoder_loss(e, q, loss_of)
    loss.backward()

    q_var = q.clone().requires_grad_()
    expected_loss = loss_of(q_var)
    (g,) = torch.autograd.grad(expected_loss, q_var)
    hessian = torch.autograd.functional.hessian(loss_of, q)  # (N, D, N, D)
    correction = torch.einsum("ijkl,kl->ij", hessian, e0 - q)
    assert correction.abs().max() > 1e-3  # the second-order term is not negligible here
    torch.testing.assert_close(e.grad, g + correction, rtol=1e-10, atol=1e-12)
    assert float(reported.detach()) == pytest.approx(float(expected_loss.detach()), rel=1e-12)
    assert float(loss.detach()) == pytest.approx(float(expected_loss.detach()), rel=1e-12)  # the correction adds 0 in value

    expected_param_grads = torch.autograd.grad(loss_of(q), list(net.parameters()))
    for param, want in zip(net.parameters(), expected_param_grads):
        torch.testing.assert_close(param.grad, want, rtol=1e-10, atol=1e-12)


def test_hessian_estimator_without_grad_returns_plain_loss():
    net, loss_of = make_decoder(3, 2, mixing=False)
    q = torch.randn(3, 2, dtype=F64)
    e = torch.randn(3, 2, dtype=F64)  # no requires_grad: nothing to correct
    loss, reported = estimators.get("hessian").decoder_loss(e, q, loss_of)
    assert float(loss.detach()) == pytest.approx(float(loss_of(q).detach()), rel=1e-12) and loss is reported


def test_hessian_estimator_with_a_loss_affine_in_the_decoder_input():
    layer = torch.nn.Linear(3, 4).to(F64)
    target = torch.randn(5, 4, dtype=F64)
    q = torch.randn(5, 3, dtype=F64)
    e = torch.randn(5, 3, dtype=F64, requires_grad=True)

    def loss_of(z):
        return (layer(z) * target).sum()  # affine in z: ∇²_z L = 0

    loss, _ = estimators.get("hessian").decoder_loss(e, q, loss_of)
    loss.backward()
    torch.testing.assert_close(e.grad, target @ layer.weight.detach(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Exact gradients (§3)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [None, 1e-3])
@pytest.mark.parametrize("mixing", [False, True], ids=["per_token", "mixing"])
def test_exact_gradients_match_the_autoencoder_gradient(mixing, kappa):
    tokens, dim = 4, 3
    net, loss_of = make_decoder(tokens, dim, mixing)
    q = torch.randn(tokens, dim, dtype=F64)
    e0 = q + 0.4 * torch.randn(tokens, dim, dtype=F64)
    e = e0.clone().requires_grad_()
    est = estimators.get("exact") if kappa is None else estimators.get("exact", kappa=kappa)
    kappa = est.kappa
    if kappa != 1e-3:
        assert kappa == 1e-6

    loss, reported = est.decoder_loss(e, q, loss_of)
    loss.backward()

    e_var = e0.clone().requires_grad_()
    loss_e = loss_of(e_var)
    (grad_e,) = torch.autograd.grad(loss_e, e_var)
    loss_q = loss_of(q)
    # Encoder: the autoencoder gradient ∇_e L(D(e)) (scaled by 1/κ then weighted by κ: relative error ~1e-16).
    torch.testing.assert_close(e.grad, grad_e, rtol=1e-9, atol=1e-12)
    assert float(reported.detach()) == pytest.approx(float(loss_q.detach()), rel=1e-12)
    assert float(loss.detach()) == pytest.approx(float(loss_q.detach()) + kappa * float(loss_e.detach()), rel=1e-12)

    params = list(net.parameters())
    grads_q = torch.autograd.grad(loss_of(q), params)
    grads_e = torch.autograd.grad(loss_of(e0), params)
    for param, g_q, g_e in zip(params, grads_q, grads_e):
        torch.testing.assert_close(param.grad, g_q + kappa * g_e, rtol=1e-12, atol=1e-15)
        # The κ term really is there: (decoder grad − ∇L(D(q)))/κ recovers ∇L(D(e)) to ~1e-16/κ relative.
        torch.testing.assert_close((param.grad - g_q) / kappa, g_e, rtol=1e-6, atol=1e-6)


def test_exact_gradients_without_grad_return_loss_at_q():
    net, loss_of = make_decoder(3, 2, mixing=False)
    q = torch.randn(3, 2, dtype=F64)
    with torch.no_grad():
        loss, reported = estimators.get("exact").decoder_loss(torch.randn(3, 2, dtype=F64), q, loss_of)
    assert float(loss.detach()) == pytest.approx(float(loss_of(q).detach()), rel=1e-12) and float(reported.detach()) == float(loss.detach())


# --------------------------------------------------------------------------------------------------
# float32 precision of the closed forms (real bugs, see the reasons)
# --------------------------------------------------------------------------------------------------


def test_float32_inverse_sq_distance_gamma_at_close_points(transport_backend):
    est = estimators.get("rotation_gamma", gamma="inverse_sq_distance")
    for dim in (32, 256):
        q = torch.randn(16, dim)
        g = torch.randn(16, dim)
        e = q.clone().requires_grad_()
        est.transport(e, q).backward(g)
        err = (e.grad - 125000.0 * g).norm(dim=-1) / (125000.0 * g.norm(dim=-1))
        assert err.max() < 1e-5, (dim, e.grad.norm(dim=-1) / g.norm(dim=-1))
    for dim in (3, 32):
        q = torch.randn(64, dim)
        e = (q + 1e-2 * torch.randn(64, dim)).requires_grad_()
        g = torch.randn(64, dim)
        est.transport(e, q).backward(g)
        want = transport_grad("rotation_gamma", {"gamma": "inverse_sq_distance"}, e.detach().double(),
                              q.double(), g.double())
        err = (e.grad.double() - want).norm(dim=-1) / want.norm(dim=-1)
        assert err.max() < 1e-4, err.max().item()


def _at_cosine(dim: int, cosine: float, tokens: int = 64):
    """float32 (e, q) pairs whose angle has exactly the given cosine (constructed in float64)."""
    q = torch.randn(tokens, dim, dtype=F64) * 1.5
    q_hat = q / q.norm(dim=-1, keepdim=True)
    u = torch.randn(tokens, dim, dtype=F64)
    u = u - (u * q_hat).sum(-1, keepdim=True) * q_hat
    u = u / u.norm(dim=-1, keepdim=True)
    sine = math.sqrt(1 - cosine * cosine)
    e = (cosine * q_hat + sine * u) * 0.8 * q.norm(dim=-1, keepdim=True)
    return e.float(), q.float()


@pytest.mark.parametrize(
    "name, cosine",
    [("rotation", -1 + 1e-5), ("rotation", -1 + 1e-3), ("reflection", 1 - 1e-5),
     ("reflection", 1 - 1e-4)],
    ids=["rotation_near_minus_q", "rotation_at_minus_q_plus_1e-3", "reflection_near_q", "reflection_typical_in_cell"],
)
def test_float32_gradient_accurate_just_above_the_fallback_threshold(name, cosine, reference_gradient, transport_backend):
    for dim in (2, 3, 32):
        e, q = _at_cosine(dim, cosine)
        g = torch.randn(64, dim)
        got = transport_grad(name, {}, e, q, g)
        want = reference_gradient(name, {}, e, q, g)  # same float32 inputs, float64 arithmetic
        err = (got.double() - want).norm(dim=-1) / want.norm(dim=-1)
        assert err.max() < 1e-3, (dim, err.max().item())


def test_float32_near_opposite_tokens_mixed_with_ordinary_ones(reference_gradient, transport_backend):
    """Tokens near e = −q are recomputed from ê + q̂ inside a batch of ordinary ones, for every variant."""
    for dim in (2, 3, 32):
        parts = [_at_cosine(dim, cosine, tokens=16) for cosine in (-1 + 1e-5, -1 + 1e-3, -0.95, 0.3, 0.99)]
        e, q = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        g = torch.randn(e.shape[0], dim)
        for name, params in CLOSED_FORM_CONFIGS:
            got = transport_grad(name, params, e, q, g)
            want = reference_gradient(name, params, e, q, g)
            err = (got.double() - want).norm(dim=-1) / want.norm(dim=-1)
            assert err.max() < 5e-4, (dim, name, params, err.max().item())


@pytest.mark.parametrize("name, cosine", [("rotation", -1 + 1e-3), ("reflection", 1 - 1e-3)])
def test_float32_gradient_near_threshold_is_still_orthogonal_enough(name, cosine, reference_gradient, transport_backend):
    """Farther from the threshold the float32 error is tolerable (< 1e-3 of the norm): documents the scale."""
    for dim in (2, 3, 32):
        e, q = _at_cosine(dim, cosine)
        g = torch.randn(64, dim)
        got = transport_grad(name, {}, e, q, g)
        want = reference_gradient(name, {}, e, q, g)
        err = (got.double() - want).norm(dim=-1) / want.norm(dim=-1)
        assert err.max() < 1e-3, (dim, err.max().item())
        assert torch.isfinite(got).all()
