"""The estimators published after the paper (estimators/nsvq.py, diveq.py, sync.py, ibq.py) against float64
closed forms of their forward value and their gradients to e and to the codebook, at generic and degenerate
points, and through the quantizer (codebook learning, refusals)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import estimators
from estimators.base import CodeChoice
from models.quantizer import VectorQuantizer

F64 = torch.float64


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def pair(n=7, dim=5, seed=0, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    e = torch.randn(n, dim, dtype=F64, generator=generator)
    q = e + scale * torch.randn(n, dim, dtype=F64, generator=generator)
    g = torch.randn(n, dim, dtype=F64, generator=generator)
    return e.requires_grad_(), q.requires_grad_(), g


def grads(z, e, q, g):
    return torch.autograd.grad((z * g).sum(), (e, q), allow_unused=True)


def brute_nearest(tokens, points):
    return torch.cdist(tokens, points).argmin(-1)


def choice(codebook, training=True):
    return CodeChoice(codebook, lambda t: brute_nearest(t, codebook.detach()), None, 0.0, training,
                      brute_nearest)


# -- NSVQ ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [2, 5, 32])
def test_nsvq_training_value_and_gradients_match_the_closed_form(dim):
    e, q, g = pair(dim=dim)
    torch.manual_seed(1)
    z = estimators.get("nsvq").transport(e, q, True)
    distance = (q - e).detach().norm(dim=-1, keepdim=True)
    v_hat = (z.detach() - e.detach()) / distance  # the drawn direction, recovered from the value
    torch.testing.assert_close(v_hat.norm(dim=-1), torch.ones(e.shape[0], dtype=F64), rtol=0, atol=1e-12)
    grad_e, grad_q = grads(z, e, q, g)
    along = (v_hat * g).sum(-1, keepdim=True)
    u = (q - e).detach() / distance
    torch.testing.assert_close(grad_e, g - u * along, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_q, u * along, rtol=1e-12, atol=1e-12)


def test_nsvq_noise_is_drawn_per_token_and_isotropic():
    e = torch.zeros(4000, 3, dtype=F64)
    q = torch.ones(4000, 3, dtype=F64)
    torch.manual_seed(0)
    directions = estimators.get("nsvq").transport(e, q, True) / math.sqrt(3)
    assert directions.unique(dim=0).shape[0] == 4000
    assert directions.mean(0).abs().max() < 0.05  # isotropic: the mean direction is near 0


def test_nsvq_evaluation_gives_q_and_degenerate_points_stay_finite():
    e, q, g = pair()
    z = estimators.get("nsvq").transport(e, q, False)
    torch.testing.assert_close(z.detach(), q.detach(), rtol=0, atol=1e-12)
    for gap in (0.0, 1e-9, 1e-12):
        e2 = e.detach().clone().requires_grad_()
        q2 = (e.detach() + gap).requires_grad_()
        z = estimators.get("nsvq").transport(e2, q2, True)
        grad_e, grad_q = grads(z, e2, q2, g)
        assert torch.isfinite(z).all() and torch.isfinite(grad_e).all() and torch.isfinite(grad_q).all()
        if gap == 0.0:
            assert torch.equal(z.detach(), e.detach()) and torch.equal(grad_e, g) and not grad_q.any()


# -- DiVeQ --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [2, 5, 32])
def test_diveq_deterministic_value_is_q_and_gradients_split_by_the_direction(dim):
    e, q, g = pair(dim=dim)
    z = estimators.get("diveq", sigma=0.0).transport(e, q, True)
    assert torch.equal(z.detach(), q.detach())
    grad_e, grad_q = grads(z, e, q, g)
    d = unit((q - e).detach())
    along = (d * g).sum(-1, keepdim=True)
    torch.testing.assert_close(grad_e, g - d * along, rtol=1e-12, atol=1e-12)  # (I − ddᵀ)g
    torch.testing.assert_close(grad_q, d * along, rtol=1e-12, atol=1e-12)  # ddᵀg


def test_diveq_noisy_direction_value_and_gradients():
    e, q, g = pair(dim=8)
    sigma = 0.05
    torch.manual_seed(3)
    z = estimators.get("diveq", sigma=sigma).transport(e, q, True)
    torch.manual_seed(3)
    noise = sigma * torch.randn(e.shape, dtype=F64)
    d = unit((q - e).detach() + noise)
    distance = (q - e).detach().norm(dim=-1, keepdim=True)
    torch.testing.assert_close(z.detach(), e.detach() + distance * d, rtol=1e-12, atol=1e-12)
    grad_e, grad_q = grads(z, e, q, g)
    u = unit((q - e).detach())
    along = (d * g).sum(-1, keepdim=True)
    torch.testing.assert_close(grad_e, g - u * along, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_q, u * along, rtol=1e-12, atol=1e-12)
    # no noise in evaluation: the value is q
    assert torch.equal(estimators.get("diveq", sigma=sigma).transport(e, q, False).detach(), q.detach())


@pytest.mark.parametrize("sigma", [0.0, 1e-3])
def test_diveq_degenerate_points_are_finite(sigma):
    _, _, g = pair()
    base = torch.randn(7, 5, dtype=F64)
    for gap in (0.0, 1e-9, 1e-12):
        e = base.clone().requires_grad_()
        q = (base + gap).requires_grad_()
        z = estimators.get("diveq", sigma=sigma).transport(e, q, True)
        grad_e, grad_q = grads(z, e, q, g)
        assert torch.isfinite(z).all() and torch.isfinite(grad_e).all() and torch.isfinite(grad_q).all()
        if gap == 0.0:
            torch.testing.assert_close(grad_e, g, rtol=0, atol=0)
            assert not grad_q.any()


def test_diveq_rejects_a_negative_sigma():
    with pytest.raises(ValueError, match="diveq: sigma"):
        estimators.get("diveq", sigma=-1.0)
    with pytest.raises(ValueError, match="sf_diveq: sigma"):
        estimators.get("sf_diveq", sigma=-1.0)


# -- SF-DiVeQ -----------------------------------------------------------------------------------------------

def test_sf_diveq_quantizes_to_the_nearest_interpolated_point_and_splits_the_gradient():
    codebook = torch.randn(6, 3, dtype=F64).requires_grad_()
    e = torch.randn(40, 3, dtype=F64).requires_grad_()
    g = torch.randn(40, 3, dtype=F64)
    torch.manual_seed(5)
    out = estimators.get("sf_diveq", sigma=0.0).quantize(e, choice(codebook), lambda t: t)
    torch.manual_seed(5)
    weights = torch.rand(5, 1, dtype=F64)
    points = (1 - weights) * codebook.detach()[:-1] + weights * codebook.detach()[1:]
    segments = brute_nearest(e.detach(), points)
    torch.testing.assert_close(out.decoder_input.detach(), points[segments], rtol=0, atol=1e-12)
    assert torch.equal(out.indices, segments + (weights[segments, 0] >= 0.5).long())
    grad_e, grad_c = torch.autograd.grad((out.decoder_input * g).sum(), (e, codebook))
    d = unit(points[segments] - e.detach())
    share = d * (d * g).sum(-1, keepdim=True)
    torch.testing.assert_close(grad_e, g - share, rtol=1e-10, atol=1e-12)
    expected = torch.zeros_like(codebook)
    expected.index_add_(0, segments, (1 - weights[segments]) * share)
    expected.index_add_(0, segments + 1, weights[segments] * share)
    torch.testing.assert_close(grad_c, expected, rtol=1e-10, atol=1e-12)


def test_sf_diveq_evaluation_takes_the_nearest_codeword():
    codebook = torch.randn(6, 3, dtype=F64)
    e = torch.randn(20, 3, dtype=F64)
    out = estimators.get("sf_diveq").quantize(e, choice(codebook, training=False), lambda t: t)
    nearest = brute_nearest(e, codebook)
    assert torch.equal(out.indices, nearest)
    assert torch.equal(out.decoder_input, codebook[nearest])


# -- the synchronised update ----------------------------------------------------------------------------------

@pytest.mark.parametrize("nu", [0.0, 0.1, 1.0])
def test_sync_value_is_q_exactly_and_the_codebook_gets_nu_times_g(nu):
    e, q, g = pair()
    z = estimators.get("sync", nu=nu).transport(e, q, True)
    assert torch.equal(z.detach(), q.detach())
    grad_e, grad_q = grads(z, e, q, g)
    assert torch.equal(grad_e, g)
    torch.testing.assert_close(grad_q, nu * g, rtol=0, atol=0)
    codebook = torch.randn(4, 5, dtype=F64).requires_grad_()
    out = estimators.get("sync", nu=nu).quantize(e, choice(codebook), lambda t: t)
    (grad_c,) = torch.autograd.grad((out.decoder_input * g).sum(), codebook)
    expected = torch.zeros_like(codebook).index_add_(0, out.indices, nu * g)
    torch.testing.assert_close(grad_c, expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="sync: nu"):
        estimators.get("sync", nu=-0.5)


# -- IBQ ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 0.0], ids=["generic", "e_zero"])
def test_ibq_value_and_gradients_match_the_closed_form(scale):
    codebook = torch.randn(9, 4, dtype=F64).requires_grad_()
    e = (scale * torch.randn(12, 4, dtype=F64)).requires_grad_()
    g = torch.randn(12, 4, dtype=F64)
    out = estimators.get("ibq").quantize(e, choice(codebook), lambda t: t)
    c = codebook.detach()
    logits = e.detach() @ c.T
    index = logits.argmax(-1)
    assert torch.equal(out.indices, index)
    assert torch.equal(out.decoder_input.detach(), c[index])
    grad_e, grad_c = torch.autograd.grad((out.decoder_input * g).sum(), (e, codebook))
    p = logits.softmax(-1)
    s = g @ c.T  # s_ik = C_k·g_i
    a = p * (s - (p * s).sum(-1, keepdim=True))
    torch.testing.assert_close(grad_e, a @ c, rtol=1e-10, atol=1e-12)
    onehot = F.one_hot(index, 9).to(F64)
    torch.testing.assert_close(grad_c, onehot.T @ g + p.T @ g + a.T @ e.detach(), rtol=1e-10, atol=1e-12)
    assert (grad_c.abs().sum(-1) > 0).all()  # every code receives a gradient


# -- through the quantizer -------------------------------------------------------------------------------------

BEYOND = [("nsvq", {}), ("diveq", {}), ("diveq", {"sigma": 0.0}), ("sf_diveq", {}), ("sync", {}), ("ibq", {})]
BEYOND_IDS = [name + "".join(f"[{v}]" for v in params.values()) for name, params in BEYOND]


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
@pytest.mark.parametrize("config", BEYOND, ids=BEYOND_IDS)
def test_through_the_quantizer_the_codebook_learns_and_zeros_stay_finite(config, lookup):
    name, params = config
    vq = VectorQuantizer(8, 4, estimator=name, estimator_params=params, lookup=lookup,
                         codebook_learning="loss").train()
    through_decoder = vq.estimator.codebook_learning == "decoder"
    assert vq.codebook_learning == ("decoder" if through_decoder else "loss")
    for z in (torch.randn(2, 4, 3, 3, requires_grad=True), torch.zeros(2, 4, 3, 3, requires_grad=True)):
        vq.embedding.grad = None
        target = torch.randn(2, 4, 3, 3)
        out = vq(z)
        loss, reported = out.reconstruction_loss(lambda t, target=target: F.mse_loss(t, target))
        if through_decoder:  # no codebook loss, no commitment
            assert float(out.aux_loss) == 0.0
        loss.backward()  # the reconstruction alone
        assert torch.isfinite(z.grad).all() and torch.isfinite(reported)
        assert vq.embedding.grad is not None and torch.isfinite(vq.embedding.grad).all()
        if z.any():
            assert vq.embedding.grad.abs().sum() > 0  # the decoder's gradient reaches the codebook


@pytest.mark.parametrize("name", ["sync", "ibq"])
def test_a_codebook_gradient_with_an_ema_codebook_is_refused(name):
    with pytest.raises(ValueError, match="EMA update would overwrite; set codebook_learning: loss"):
        VectorQuantizer(8, 4, estimator=name, codebook_learning="ema")
