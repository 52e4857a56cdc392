"""The vector quantizer (models/quantizer.py) and the nearest-code search (models/code_search.py).

Hand computations throughout: brute-force searches, an EMA update recomputed with explicit loops over codes,
the codebook / commitment losses and their gradients written out, and the per-batch statistics.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import estimators
from conftest import TRANSPORT_CONFIGS
from models.code_search import chunk_rows, nearest_code
from models.quantizer import VectorQuantizer, to_tokens

F64 = torch.float64

ALL_CONFIGS = [
    *TRANSPORT_CONFIGS,
    ("hessian", {}),
    ("exact", {}),
    ("gumbel", {}),
]
ALL_IDS = [name + "".join(f"[{v}]" for v in params.values()) for name, params in ALL_CONFIGS]
TRANSPORT_CONFIGS = [c for c in ALL_CONFIGS if c[0] not in ("hessian", "exact", "gumbel")]
TRANSPORT_IDS = [i for c, i in zip(ALL_CONFIGS, ALL_IDS) if c[0] not in ("hessian", "exact", "gumbel")]
NON_SAMPLING_CONFIGS = [c for c in ALL_CONFIGS if c[0] != "gumbel"]
NON_SAMPLING_IDS = [i for c, i in zip(ALL_CONFIGS, ALL_IDS) if c[0] != "gumbel"]


def tokens_of(z):
    """Channel-first (B, D, ...) → (N, D), written independently of models.quantizer.to_tokens."""
    if z.ndim == 2:
        return z
    return z.permute(0, *range(2, z.ndim), 1).reshape(-1, z.shape[1])


def brute_force_euclidean(e, codebook):
    return ((e[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(-1)


#: The estimators published after the paper; tests/test_beyond_paper.py runs them through the quantizer.
BEYOND_CONFIGS = [("nsvq", {}), ("diveq", {}), ("sf_diveq", {}), ("sync", {}), ("ibq", {})]


def test_registry_covered():
    assert sorted({name for name, _ in ALL_CONFIGS + BEYOND_CONFIGS}) == estimators.names()


# --------------------------------------------------------------------------------------------------
# Nearest-code search
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_codes", [1, 5, 64])
@pytest.mark.parametrize("dim", [2, 8, 33])
def test_nearest_code_equals_brute_force(num_codes, dim):
    e = torch.randn(50, dim, dtype=F64) * 2
    codebook = torch.randn(num_codes, dim, dtype=F64)
    expected = brute_force_euclidean(e, codebook)
    assert torch.equal(nearest_code(e, codebook, "euclidean"), expected)
    e_unit, c_unit = F.normalize(e, dim=-1), F.normalize(codebook, dim=-1)
    expected_cos = (e_unit @ c_unit.T).argmax(-1)
    assert torch.equal(nearest_code(e_unit, c_unit, "cosine"), expected_cos)
    for chunk in (1, 7, 50, 1000, None):
        assert torch.equal(nearest_code(e, codebook, "euclidean", chunk_size=chunk), expected)
        assert torch.equal(nearest_code(e_unit, c_unit, "cosine", chunk_size=chunk), expected_cos)


def test_nearest_code_euclidean_differs_from_dot_product_on_unnormalised_codes():
    """The ‖C_k‖² term matters: a long code in the right direction is not the nearest."""
    codebook = torch.tensor([[10.0, 0.0], [1.0, 0.2]], dtype=F64)
    e = torch.tensor([[1.0, 0.0]], dtype=F64)
    assert nearest_code(e, codebook, "euclidean").item() == 1
    assert (e @ codebook.T).argmax().item() == 0


def test_nearest_code_rejects_unknown_lookup_and_chunk_rows_budget():
    with pytest.raises(ValueError):
        nearest_code(torch.randn(3, 2), torch.randn(4, 2), "manhattan")
    assert chunk_rows(1024) == (1 << 24) // 1024
    assert chunk_rows(10, budget=35) == 3
    assert chunk_rows(10**9) == 1


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
def test_quantizer_chunking_does_not_change_indices(lookup):
    z = torch.randn(2, 6, 5, 5)
    reference = VectorQuantizer(40, 6, lookup=lookup).eval()
    expected = reference(z).indices
    for chunk in (1, 7, None):
        vq = VectorQuantizer(40, 6, lookup=lookup, chunk_size=chunk).eval()
        vq.load_state_dict(reference.state_dict())
        assert torch.equal(vq(z).indices, expected)
        assert torch.equal(vq.lookup_indices(z).reshape(expected.shape), expected)


# --------------------------------------------------------------------------------------------------
# EMA codebook update
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_ema_update_matches_hand_computation(dtype):
    num_codes, dim, decay, eps = 5, 3, 0.8, 1e-5
    vq = VectorQuantizer(num_codes, dim, estimator="rotation", ema_decay=decay).to(dtype)
    vq.train()
    embedding = vq.embedding.clone().to(F64)
    cluster_size = torch.ones(num_codes, dtype=F64)
    embed_sum = embedding.clone()
    assert torch.equal(vq.cluster_size.to(F64), cluster_size)
    assert torch.equal(vq.embed_sum.to(F64), embed_sum)

    for step in range(2):
        # Tokens around codes 0-3 only: code 4 stays unused and only decays.
        choice = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 0, 2])
        z = (embedding[choice] + 0.05 * torch.randn(len(choice), dim, dtype=F64)).to(dtype)
        expected_idx = brute_force_euclidean(z.to(F64), embedding)
        assert torch.equal(expected_idx, choice)  # the test's own premise
        out = vq(z)
        assert torch.equal(out.indices, expected_idx)
        # Decoder input uses the codebook *before* this step's update.
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.decoder_input.to(F64), embedding[expected_idx], **tol)

        for k in range(num_codes):
            members = [i for i in range(len(choice)) if int(expected_idx[i]) == k]
            count = float(len(members))
            total_k = torch.zeros(dim, dtype=F64)
            for i in members:
                total_k += z[i].to(F64)
            cluster_size[k] = decay * cluster_size[k] + (1 - decay) * count
            embed_sum[k] = decay * embed_sum[k] + (1 - decay) * total_k
        total = float(cluster_size.sum())
        for k in range(num_codes):
            smoothed = (float(cluster_size[k]) + eps) / (total + num_codes * eps) * total
            embedding[k] = embed_sum[k] / smoothed

        torch.testing.assert_close(vq.cluster_size.to(F64), cluster_size, **tol)
        torch.testing.assert_close(vq.embed_sum.to(F64), embed_sum, **tol)
        torch.testing.assert_close(vq.embedding.to(F64), embedding, **tol)
    # The unused code only decayed: its count went 1 → 0.8 → 0.64.
    assert float(vq.cluster_size[4]) == pytest.approx(0.64, rel=1e-6)


def test_ema_does_not_update_in_eval_mode_and_codebook_is_a_buffer():
    vq = VectorQuantizer(6, 3, estimator="rotation")
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq.eval()
    vq(torch.randn(20, 3))
    for key, value in vq.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert "embedding" in dict(vq.named_buffers())
    assert "embedding" not in dict(vq.named_parameters())


def test_ema_aux_loss_is_commitment_only():
    beta = 0.7
    vq = VectorQuantizer(6, 3, estimator="rotation", beta=beta).double()
    z = torch.randn(20, 3, dtype=F64, requires_grad=True)
    codebook = vq.codebook.clone()
    out = vq(z)
    q = codebook[out.indices]
    assert float(out.aux_loss.detach()) == pytest.approx(beta * float(((z.detach() - q) ** 2).mean()), rel=1e-12)
    out.aux_loss.backward()
    torch.testing.assert_close(z.grad, beta * 2 * (z.detach() - q) / z.numel(), rtol=1e-12, atol=1e-15)


def test_quantizer_output_holds_the_codes_from_before_the_ema_update():
    vq = VectorQuantizer(6, 3, estimator="rotation").double()
    codebook = vq.codebook.clone()
    out = vq(torch.randn(20, 3, dtype=F64))
    assert torch.equal(out.q, codebook[out.indices])
    assert not torch.equal(vq.codebook, codebook)  # the update happened, after the codes were gathered


class _FarthestCode(estimators.Estimator):
    """A kind the quantizer has never seen: the farthest code, decoded once, with a KL-like auxiliary term."""

    name = "farthest"
    kind = "test_only"

    def quantize(self, e, codes, decode):
        indices = torch.cdist(e.detach(), codes.codebook.detach()).argmax(-1)
        decoder_input = decode(e + (codes.codebook[indices].detach() - e).detach())
        return estimators.Quantized(decoder_input, indices, estimators.base.decoded_once(decoder_input),
                                    aux_loss=torch.tensor(0.25, dtype=e.dtype))


def test_an_estimator_of_a_new_kind_plugs_in_through_quantize():
    """The quantizer only calls `Estimator.quantize`: a new kind needs no change in models/quantizer.py."""
    beta = 0.5
    vq = VectorQuantizer(5, 3, estimator=_FarthestCode(), beta=beta).double().eval()
    z = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    out = vq(z)
    e = tokens_of(z.detach())
    farthest = torch.cdist(e, vq.codebook).argmax(-1)
    assert torch.equal(out.indices.reshape(-1), farthest)
    torch.testing.assert_close(tokens_of(out.decoder_input.detach()), vq.codebook[farthest])
    commitment = beta * float(((e - vq.codebook[farthest]) ** 2).mean())
    assert float(out.aux_loss.detach()) == pytest.approx(commitment + 0.25, rel=1e-12)
    loss, reported = out.reconstruction_loss(lambda d: (d * d).sum())
    assert loss is reported
    loss.backward()  # straight through: the gradient at z is 2·q
    torch.testing.assert_close(tokens_of(z.grad), 2 * vq.codebook[farthest])


# --------------------------------------------------------------------------------------------------
# codebook_learning="loss": codebook and commitment losses
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", NON_SAMPLING_CONFIGS, ids=NON_SAMPLING_IDS)
def test_loss_learned_codebook_gets_gradient_only_from_the_codebook_loss(config):
    name, params = config
    beta, num_codes, dim = 0.25, 6, 4
    vq = VectorQuantizer(num_codes, dim, estimator=name, estimator_params=params, codebook_learning="loss",
                         beta=beta).double()
    assert isinstance(vq.embedding, torch.nn.Parameter)
    z = torch.randn(15, dim, dtype=F64, requires_grad=True)
    target = torch.randn(15, dim, dtype=F64)
    out = vq(z)
    codebook = vq.embedding.detach()
    q = codebook[out.indices]
    e = z.detach()

    # 1) the reconstruction path: nothing reaches the codebook, something reaches the encoder.
    loss, _ = out.reconstruction_loss(lambda t: ((t - target) ** 2).sum())
    loss.backward(retain_graph=True)
    assert vq.embedding.grad is None or torch.count_nonzero(vq.embedding.grad) == 0
    assert z.grad is not None and z.grad.abs().sum() > 0
    z.grad = None

    # 2) the auxiliary loss: β·mse(e, sg(q)) + mse(q, sg(e)), value and gradients by hand.
    n = e.numel()
    assert float(out.aux_loss.detach()) == pytest.approx(beta * float(((e - q) ** 2).sum() / n)
                                                + float(((q - e) ** 2).sum() / n), rel=1e-12)
    out.aux_loss.backward()
    expected_codebook_grad = torch.zeros_like(codebook)
    for i, k in enumerate(out.indices.tolist()):
        expected_codebook_grad[k] += 2 * (q[i] - e[i]) / n
    torch.testing.assert_close(vq.embedding.grad, expected_codebook_grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(z.grad, beta * 2 * (e - q) / n, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------

LAYOUTS = {"tokens": (12, 4), "image": (2, 4, 3, 5), "video": (2, 4, 2, 3, 3)}


@pytest.mark.parametrize("estimator", ["rotation", "ste", "hessian", "gumbel"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_keep_shape_and_decoder_input_is_the_codebook_rows(layout, estimator):
    shape = LAYOUTS[layout]
    vq = VectorQuantizer(16, 4, estimator=estimator).double().train()
    z = torch.randn(*shape, dtype=F64, requires_grad=True)
    codebook = vq.codebook.detach().clone()  # before any EMA update
    out = vq(z)
    assert out.decoder_input.shape == z.shape
    assert out.decoder_input.dtype == z.dtype
    expected_index_shape = (shape[0],) if len(shape) == 2 else (shape[0], *shape[2:])
    assert out.indices.shape == expected_index_shape
    flat_indices = out.indices.reshape(-1)
    if estimator != "gumbel":  # gumbel samples its codes; the others pick the nearest
        assert torch.equal(flat_indices, brute_force_euclidean(tokens_of(z.detach()), codebook))
    expected = codebook[flat_indices]
    got = tokens_of(out.decoder_input.detach())
    if estimator in ("rotation", "gumbel"):
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # to_tokens restores the layout it took apart.
    tokens, restore = to_tokens(z.detach())
    assert torch.equal(tokens, tokens_of(z.detach()))
    assert torch.equal(restore(tokens), z.detach())


@pytest.mark.parametrize("layout", ["image", "video"])
def test_layout_plumbing_of_the_rotation_gradient(layout, reference_gradient):
    """z.grad (channel-first) equals λRᵀg applied token by token."""
    shape = LAYOUTS[layout]
    vq = VectorQuantizer(16, 4, estimator="rotation").double().eval()
    z = torch.randn(*shape, dtype=F64, requires_grad=True)
    out = vq(z)
    g = torch.randn(*shape, dtype=F64)
    loss, _ = out.reconstruction_loss(lambda t: (t * g).sum())
    loss.backward()
    q_tokens = vq.codebook.detach()[out.indices.reshape(-1)]
    expected = reference_gradient("rotation", {}, tokens_of(z.detach()), q_tokens, tokens_of(g))
    torch.testing.assert_close(tokens_of(z.grad), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Factorised codes (ViT-VQGAN)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["rotation", "ste"])
def test_factorised_cosine_codes(estimator):
    vq = VectorQuantizer(32, 12, estimator=estimator, factorized_dim=4, lookup="cosine").double()
    z = torch.randn(2, 12, 3, 3, dtype=F64, requires_grad=True)
    codebook_before = vq.codebook.detach().clone()
    out = vq(z)
    assert out.e.shape == (18, 4) and out.q.shape == (18, 4)
    torch.testing.assert_close(out.e.detach().norm(dim=-1), torch.ones(18, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(codebook_before.norm(dim=-1), torch.ones(32, dtype=F64), rtol=0, atol=1e-12)
    e_expected = F.normalize(vq.project_in(tokens_of(z.detach())), dim=-1)
    torch.testing.assert_close(out.e.detach(), e_expected, rtol=0, atol=1e-12)
    flat = out.indices.reshape(-1)
    assert torch.equal(flat, (e_expected @ codebook_before.T).argmax(-1))
    assert out.decoder_input.shape == z.shape  # back to the model dim (12)
    expected_tokens = vq.project_out(codebook_before[flat])
    torch.testing.assert_close(tokens_of(out.decoder_input.detach()), expected_tokens.detach(), rtol=0, atol=1e-12)
    loss, _ = out.reconstruction_loss(lambda t: (t ** 2).sum())
    (loss + out.aux_loss).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert vq.project_in.weight.grad.abs().sum() > 0 and vq.project_out.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# statistics()
# --------------------------------------------------------------------------------------------------


def test_statistics_on_a_tiny_case():
    vq = VectorQuantizer(4, 2, estimator="ste").eval()
    codes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    vq.embedding.copy_(codes)
    assignment = [0, 0, 1, 3, 3, 3]
    offsets = torch.tensor([[0.5, 0.0], [0.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0], [0.0, 0.25]])
    z = codes[assignment] + offsets
    out = vq(z)
    assert out.indices.tolist() == assignment
    stats = out.statistics()
    assert stats["usage_batch"] == pytest.approx(3 / 4)
    probs = [2 / 6, 1 / 6, 3 / 6]
    assert stats["perplexity"] == pytest.approx(math.exp(-sum(p * math.log(p) for p in probs)), rel=1e-6)
    assert stats["quant_error"] == pytest.approx(float((offsets ** 2).sum()) / offsets.numel(), rel=1e-6)
    assert torch.equal(vq.lookup_indices(z), out.indices)
    # A single code used everywhere: perplexity 1, usage 1/K.
    single = vq(torch.zeros(5, 2)).statistics()
    assert single["perplexity"] == pytest.approx(1.0) and single["usage_batch"] == pytest.approx(0.25)
    assert single["quant_error"] == 0.0


# --------------------------------------------------------------------------------------------------
# Zeros and end-to-end
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
@pytest.mark.parametrize("config", ALL_CONFIGS, ids=ALL_IDS)
def test_no_nan_when_fed_zeros(config, lookup):
    name, params = config
    vq = VectorQuantizer(8, 4, estimator=name, estimator_params=params, lookup=lookup).train()
    z = torch.zeros(2, 4, 3, 3, requires_grad=True)
    target = torch.randn(2, 4, 3, 3)
    out = vq(z)
    assert torch.isfinite(out.decoder_input).all()
    loss, reported = out.reconstruction_loss(lambda t: F.mse_loss(t, target))
    total = loss + out.aux_loss
    assert torch.isfinite(total) and torch.isfinite(reported)
    total.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert all(torch.isfinite(v).all() for v in vq.state_dict().values())
    stats = out.statistics()
    assert all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=ALL_IDS)
def test_every_estimator_end_to_end_through_the_quantizer(config):
    name, params = config
    encoder = torch.nn.Conv2d(3, 4, 1)
    decoder = torch.nn.Conv2d(4, 3, 1)
    vq = VectorQuantizer(8, 4, estimator=name, estimator_params=params).train()
    x = torch.randn(2, 3, 4, 4)
    z = encoder(x)
    z.retain_grad()
    out = vq(z)
    assert out.decoder_input.shape == z.shape and out.indices.shape == (2, 4, 4)

    def loss_of(t):
        return F.mse_loss(decoder(t), x)

    loss, reported = out.reconstruction_loss(loss_of)
    # The reported reconstruction loss is L(D(decoder input)) = L(D(q)) for every kind.
    assert float(reported.detach()) == pytest.approx(float(loss_of(out.decoder_input).detach()), rel=1e-5)
    (loss + out.aux_loss).backward()
    for tensor in (z.grad, encoder.weight.grad, decoder.weight.grad):
        assert tensor is not None and torch.isfinite(tensor).all() and tensor.abs().sum() > 0
    if name == "gumbel":
        assert vq.logits_head.weight.grad.abs().sum() > 0
        assert vq.embedding.grad is not None and vq.embedding.grad.abs().sum() > 0  # learned via the decoder
    else:
        assert vq.logits_head is None


def test_gumbel_quantizer_eval_mode_is_deterministic_argmax():
    vq = VectorQuantizer(8, 4, estimator="gumbel").eval()
    z = torch.randn(2, 4, 3, 3)
    first, second = vq(z), vq(z)
    assert torch.equal(first.indices, second.indices)
    logits = vq.logits_head(tokens_of(z))
    assert torch.equal(first.indices.reshape(-1), logits.argmax(-1))
    assert torch.equal(tokens_of(first.decoder_input.detach()), vq.codebook.detach()[logits.argmax(-1)])


def test_quantizer_rejects_invalid_arguments():
    with pytest.raises(ValueError):
        VectorQuantizer(4, 2, lookup="manhattan")
    with pytest.raises(ValueError):
        VectorQuantizer(4, 2, codebook_learning="adam")
    with pytest.raises(ValueError):
        VectorQuantizer(4, 2, ema_decay=1.0)
    with pytest.raises(ValueError):
        VectorQuantizer(4, 2, estimator="rotaton")
    with pytest.raises(TypeError):
        VectorQuantizer(4, 2, estimator="rotation_gamma", estimator_params={"gama": "one"})


def test_bfloat16_input_keeps_its_dtype():
    vq = VectorQuantizer(8, 4, estimator="rotation").eval()
    z = torch.randn(2, 4, 3, 3).to(torch.bfloat16)
    out = vq(z)
    assert out.decoder_input.dtype == torch.bfloat16
    expected = vq.codebook[out.indices.reshape(-1)].to(torch.bfloat16)
    assert torch.equal(tokens_of(out.decoder_input), expected)
