"""The quantizer options beyond the paper (models/quantizer.py: reparameterization, dead-code replacement;
models/fsq.py, models/lfq.py: the codebook-free baselines) and the load-time refusals of combinations that
make no sense (models/base.py `ModelFamily.estimator_problems`, harness/config.py)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from harness.suite import SuiteError, load_suite
from helpers_harness import tiny_raw, write_yaml
from models.base import QuantizerParams, make_quantizer
from models.fsq import FiniteScalarQuantizer
from models.lfq import LookupFreeQuantizer
from models.quantizer import VectorQuantizer

F64 = torch.float64


# -- reparameterizations ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", ["ste", "rotation", "sync", "diveq"])
def test_affine_codebook_is_scaled_and_shifted_and_learns_scale_and_shift(estimator):
    vq = VectorQuantizer(6, 3, estimator=estimator, codebook_learning="loss", reparameterization="affine").double()
    with torch.no_grad():
        vq.affine_scale.copy_(torch.tensor([2.0, 0.5, -1.0]))
        vq.affine_shift.copy_(torch.tensor([0.1, -0.2, 0.3]))
    torch.testing.assert_close(vq.codebook, vq.embedding * vq.affine_scale + vq.affine_shift, rtol=0, atol=0)
    z = torch.randn(10, 3, dtype=F64, requires_grad=True)
    out = vq(z)
    loss, _ = out.reconstruction_loss(lambda t: (t ** 2).sum())
    (loss + out.aux_loss).backward()
    for parameter in (vq.embedding, vq.affine_scale, vq.affine_shift):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_affine_running_codebook_takes_the_encoder_outputs_running_statistics():
    vq = VectorQuantizer(32, 2, estimator="ste", codebook_learning="loss", reparameterization="affine_running")
    tokens = torch.randn(500, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([4.0, -1.0])
    vq.eval()
    vq(tokens)
    assert torch.equal(vq.running_mean, torch.zeros(2)) and torch.equal(vq.running_std, torch.ones(2))
    vq.train()
    vq(tokens)
    torch.testing.assert_close(vq.running_mean, 0.01 * tokens.mean(0))
    torch.testing.assert_close(vq.running_std, 0.99 + 0.01 * tokens.std(0))
    codebook = vq.codebook.detach()
    torch.testing.assert_close(codebook.mean(0), vq.running_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(codebook.std(0), vq.running_std, rtol=0, atol=1e-5)


def test_simvq_codebook_is_a_learned_map_of_a_frozen_basis():
    vq = VectorQuantizer(6, 3, estimator="rotation", codebook_learning="loss", reparameterization="simvq").double()
    assert "embedding" in dict(vq.named_buffers()) and not vq.embedding.requires_grad
    torch.testing.assert_close(vq.codebook, vq.embedding, rtol=0, atol=0)  # the map starts at the identity
    with torch.no_grad():
        vq.simvq_map.weight.copy_(torch.randn(3, 3, dtype=F64))
    torch.testing.assert_close(vq.codebook, vq.embedding @ vq.simvq_map.weight.T, rtol=1e-12, atol=1e-12)
    out = vq(torch.randn(10, 3, dtype=F64))
    out.aux_loss.backward()
    assert vq.simvq_map.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("reparameterization", ["affine", "affine_running", "simvq"])
def test_a_reparameterization_with_an_ema_codebook_is_refused(reparameterization):
    with pytest.raises(ValueError, match="EMA update overwrites the codes; set codebook_learning: loss"):
        VectorQuantizer(6, 3, codebook_learning="ema", reparameterization=reparameterization)
    with pytest.raises(ValueError, match="unknown reparameterization 'afine'"):
        VectorQuantizer(6, 3, codebook_learning="loss", reparameterization="afine")


# -- dead-code replacement -------------------------------------------------------------------------------------

@pytest.mark.parametrize("codebook_learning", ["ema", "loss"])
def test_codes_unused_for_the_window_are_replaced_by_encoder_outputs(codebook_learning):
    vq = VectorQuantizer(4, 2, estimator="ste", codebook_learning=codebook_learning, dead_code_window=2)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
        if codebook_learning == "ema":
            vq.embed_sum.copy_(vq.embedding)
    near_zero = torch.randn(16, 2) * 0.01
    vq.eval()
    for _ in range(3):
        vq(near_zero)
    assert int(vq.codes_replaced) == 0 and not vq.steps_unused.any()  # evaluation counts nothing
    vq.train()
    for _ in range(2):
        vq(near_zero)  # only code 0 is used
    assert vq.steps_unused.tolist() == [0, 2, 2, 2]
    before = vq.embedding[0].clone()
    fresh = torch.randn(16, 2) * 0.01 + 5.0
    vq(fresh)  # codes 1-3 are replaced by rows of this batch before its lookup
    assert int(vq.codes_replaced) == 3
    for k in (1, 2, 3):
        assert (vq.embedding[k] == fresh).all(-1).any() or codebook_learning == "ema"
    if codebook_learning == "ema":  # replaced from the batch, then moved by the batch's EMA update
        assert vq.cluster_size[1:].sum() > 0 and (vq.embedding[1:] - 5.0).abs().max() < 1.0
    else:
        assert torch.equal(vq.embedding[0], before)
    assert vq.steps_unused[0] == 1  # code 0 went unused in the last batch


def test_dead_code_replacement_is_written_back_through_the_affine_map():
    vq = VectorQuantizer(3, 2, estimator="ste", codebook_learning="loss", reparameterization="affine",
                         dead_code_window=1)
    with torch.no_grad():
        vq.affine_scale.copy_(torch.tensor([2.0, 4.0]))
        vq.affine_shift.copy_(torch.tensor([1.0, -1.0]))
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0]]))
    vq.train()
    vq(torch.ones(4, 2))
    target = torch.full((4, 2), 7.0)
    vq(target)
    torch.testing.assert_close(vq.codebook.detach()[1:], target[:2])
    assert int(vq.codes_replaced) == 2


def test_dead_code_replacement_is_recorded_by_the_family(tmp_path):
    from models.vqvae import VQVAE, VQVAEParams
    params = VQVAEParams(resolution=16, channels=8, channel_mult=[1, 2], num_codes=16, latent_dim=4,
                         dead_code_window=1)
    model = VQVAE(params, "rotation")
    model.train()
    model.autoencoder_loss(torch.randn(2, 3, 16, 16))
    model.autoencoder_loss(torch.randn(2, 3, 16, 16))
    metrics = model.eval().evaluate([torch.randn(2, 3, 16, 16)])
    assert metrics["codes_replaced"] == float(model.quantizer.codes_replaced) > 0
    assert "codes_replaced" not in VQVAE(VQVAEParams(resolution=16, channels=8, channel_mult=[1, 2]),
                                         "rotation").eval().evaluate([torch.randn(2, 3, 16, 16)])


@pytest.mark.parametrize("reparameterization", ["affine_running", "simvq"])
def test_dead_code_replacement_through_a_shared_map_is_refused(reparameterization):
    with pytest.raises(ValueError, match="cannot be written back"):
        VectorQuantizer(4, 2, codebook_learning="loss", reparameterization=reparameterization, dead_code_window=3)


# -- FSQ ------------------------------------------------------------------------------------------------------

def test_fsq_rounds_each_dimension_to_its_levels_and_indexes_the_implied_grid():
    fsq = FiniteScalarQuantizer(4, [3, 4, 5]).double()
    assert fsq.num_codes == 60
    with torch.no_grad():  # project the first three dimensions as they are, so x spans every level
        fsq.project_in.weight.copy_(torch.eye(3, 4, dtype=F64))
        fsq.project_in.bias.zero_()
    x = (torch.rand(4000, 4, dtype=F64) * 2 - 1) * 3
    out = fsq(x)
    integers = out.q * fsq.half_width  # the rounded values
    for i, level in enumerate([3, 4, 5]):
        assert set(integers[:, i].round().long().tolist()) == set(range(-(level // 2), (level + 1) // 2))
    digits = integers.round().long() + torch.tensor([1, 2, 2])
    torch.testing.assert_close(out.indices, digits[:, 0] + 3 * digits[:, 1] + 12 * digits[:, 2], rtol=0, atol=0)
    assert out.indices.unique().numel() == 60  # every point of the grid is reachable
    expected = fsq.project_out(out.q)
    torch.testing.assert_close(out.decoder_input, expected, rtol=0, atol=1e-12)
    assert float(out.aux_loss) == 0.0
    assert torch.equal(fsq.lookup_indices(x), out.indices)
    stats = out.statistics()
    assert float(stats["usage_batch"]) == 1.0
    # straight through the rounding: the gradient is that of the bounded projection
    x = torch.randn(5, 4, dtype=F64, requires_grad=True)
    g = torch.randn(5, 4, dtype=F64)
    (fsq(x).decoder_input * g).sum().backward()
    y = x.detach().clone().requires_grad_()
    (fsq.project_out(fsq.bound(fsq.project_in(y)) / fsq.half_width) * g).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-12)


# -- LFQ ------------------------------------------------------------------------------------------------------

def test_lfq_signs_indices_and_auxiliary_loss_by_hand():
    lfq = LookupFreeQuantizer(5, 8, beta=0.25, entropy_weight=0.1).double()
    z = torch.randn(30, 5, dtype=F64)
    out = lfq(z)
    x = lfq.project_in(z).detach()
    q = torch.where(x > 0, 1.0, -1.0).to(F64)
    assert torch.equal(out.q, q)
    assert torch.equal(out.indices, ((x > 0).long() * torch.tensor([1, 2, 4])).sum(-1))
    torch.testing.assert_close(out.decoder_input.detach(), lfq.project_out(q).detach(), rtol=0, atol=1e-12)
    codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=F64).flip(-1)  # bit 0 first
    distances = torch.cdist(x, codes) ** 2
    p = (-distances).softmax(-1)
    per_token = -(p * p.log()).sum(-1).mean()
    mean_p = p.mean(0)
    entropy = per_token + (mean_p * mean_p.log()).sum()
    expected = 0.25 * ((x - q) ** 2).mean() + 0.1 * entropy
    assert float(out.aux_loss.detach()) == pytest.approx(float(expected), rel=1e-10)
    assert torch.equal(lfq.lookup_indices(z), out.indices)


@pytest.mark.parametrize("num_codes", [6, 1 << 17])
def test_lfq_needs_a_power_of_two_number_of_codes(num_codes):
    with pytest.raises(ValueError, match="lfq"):
        LookupFreeQuantizer(4, num_codes)


@pytest.mark.parametrize("quantizer", ["fsq", "lfq"])
def test_codebook_free_quantizers_take_the_ste_only(quantizer):
    params = QuantizerParams(num_codes=16, latent_dim=4, quantizer=quantizer)
    assert make_quantizer(params, "ste").num_codes == (16 if quantizer == "lfq" else 8 * 5 * 5 * 5)
    with pytest.raises(ValueError, match="codebook-free.*use estimator ste"):
        make_quantizer(params, "rotation")


# -- refused when the suite loads ------------------------------------------------------------------------------

REFUSALS = [
    ({"quantizer": "fsq"}, "rotation",
     "estimator.name: 'rotation' cannot be used here: quantizer 'fsq' is codebook-free"),
    ({"quantizer": "lfq"}, "sync", "quantizer 'lfq' is codebook-free"),
    ({"codebook_learning": "ema"}, "sync", "set model.codebook_learning: loss"),
    ({"codebook_learning": "ema"}, "ibq", "set model.codebook_learning: loss"),
    ({"codebook_learning": "ema", "reparameterization": "affine"}, "ste", "set model.codebook_learning: loss"),
    ({"codebook_learning": "loss", "reparameterization": "simvq", "dead_code_window": 5}, "ste",
     "cannot be written back"),
    ({"quantizer": "fsq", "dead_code_window": 5}, "ste", "dead_code_window is an option of the vq quantizer"),
    ({"quantizer": "lfq", "num_codes": 12}, "ste", "lfq needs num_codes to be a power of 2"),
    ({"quantizer": "fsq", "fsq_levels": [1, 4]}, "ste", "fsq_levels must be a non-empty list of integers >= 2"),
    ({"quantizer": "fsq"}, "ste", "metrics.diagnostics: the gradient diagnostics compare gradients"),
    ({"reparameterization": "afine", "codebook_learning": "loss"}, "ste", "reparameterization 'afine' is not one"),
]


@pytest.mark.parametrize("model, estimator, message", REFUSALS)
def test_senseless_combinations_are_refused_when_the_suite_loads(tmp_path, model, estimator, message):
    raw = tiny_raw("refused", base={"model": model, "estimator": {"name": estimator}})
    path = write_yaml(tmp_path / "refused.yaml", raw)
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_diveq_and_nsvq_learn_the_codebook_through_the_decoder_even_with_an_ema_setting(tmp_path):
    raw = tiny_raw("accepted", grid={"estimator.name": ["nsvq", "diveq", "sf_diveq"]},
                   base={"model": {"codebook_learning": "ema", "dead_code_window": 4}})
    suite = load_suite(write_yaml(tmp_path / "accepted.yaml", raw))
    assert len(suite.runs) == 3


def test_the_synthetic_problems_refuse_the_estimators_that_learn_their_own_codebook(tmp_path):
    raw = {"name": "synthetic", "seeds": [0], "base": {"model": {"family": "toy2d_field"},
                                                       "estimator": {"name": "diveq"},
                                                       "metrics": {"diagnostics": False, "fidelity": False}}}
    with pytest.raises(SuiteError, match="studies the gradient at a given code"):
        load_suite(write_yaml(tmp_path / "synthetic.yaml", raw))


# -- the suite ------------------------------------------------------------------------------------------------

def test_beyond_paper_suite_crosses_every_method_with_ste_and_rotation():
    suite = load_suite("beyond_paper", profile="cpu")
    seeds = {run.config.seed for run in suite.runs}
    assert len(seeds) >= 5
    methods = {(run.config.estimator.name, run.config.model.params.quantizer,
                run.config.model.params.reparameterization, run.config.model.params.dead_code_window)
               for run in suite.runs}
    names = {m[0] for m in methods}
    assert {"ste", "rotation", "nsvq", "diveq", "sf_diveq", "sync", "ibq"} <= names
    assert {m[1] for m in methods} == {"vq", "fsq", "lfq"}
    for variant in ("affine", "simvq"):
        assert {("ste", "vq", variant, None), ("rotation", "vq", variant, None)} <= methods
    families = [run.config.model.family for run in suite.runs]
    assert sorted(set(families)) == ["vqgan", "vqvae"] and families.count("vqgan") == families.count("vqvae")
    paper = load_suite("beyond_paper", profile="paper", check_data=False)
    assert {run.config.model.preset for run in paper.runs} == {"paper_euclidean_1024x32", "paper_taming"}
    assert math.prod(paper.runs[0].config.model.params.fsq_levels) == 1000
