"""The GAN model families: vqgan, vit_vqgan, timesformer_vqgan (models/vqgan.py, vit_vqgan.py,
timesformer_vqgan.py, discriminator.py, perceptual.py, transformer_blocks.py).

Every family × every registered estimator trains (refused ones refuse), latents have each preset's stated
shape, the paper presets carry the numbers of the paper's Tables 8-11, the adaptive discriminator weight matches a hand
computation, the video attention is divided, and the LPIPS path works with a stand-in weights file.
Sizes are tiny: the whole file runs in seconds on two CPU cores.
"""
from __future__ import annotations

import copy
import math
import types

import pytest
import torch
import torch.nn.functional as F

import estimators
import models.timesformer_vqgan  # noqa: F401  (registers the family)
import models.vit_vqgan  # noqa: F401
import models.vqgan  # noqa: F401
from harness.diagnostics import gradient_diagnostics
from models.base import StepContext
from models.discriminator import NORMS, NLayerDiscriminator, discriminator_loss, generator_loss, output_size
from models.perceptual import LPIPS, WEIGHTS_ENV
from models.registry import get_family
from models.timesformer_vqgan import DividedSpaceTimeBlock
from models.transformer_blocks import patchify, unpatchify
from models.vqgan import AdversarialVQAutoencoder, adaptive_weight

GAN_FAMILIES = ["vqgan", "vit_vqgan", "timesformer_vqgan"]
TRAINING = types.SimpleNamespace(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)

#: The cpu presets shrunk further (16×16 inputs, 1-2 blocks, K=32); the discriminator starts at step 1.
TINY = {
    "vqgan": dict(resolution=16, channels=8, channel_mult=[1, 2], num_codes=32, latent_dim=8, disc_channels=8,
                  disc_layers=2, disc_start=1),
    "vit_vqgan": dict(resolution=16, patch_size=4, hidden_dim=32, latent_dim=32, depth=1, heads=2, mlp_dim=64,
                      num_codes=32, factorized_dim=8, disc_channels=8, disc_layers=2, disc_start=1),
    "timesformer_vqgan": dict(frames=4, resolution=16, patch_size=4, hidden_dim=32, latent_dim=32, depth=1, heads=2,
                              mlp_dim=64, num_codes=32, factorized_dim=8, disc_channels=8, disc_layers=2,
                              disc_start=1),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tiny models run far faster on one intra-op thread (no oversubscription on shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_params(family_name: str, **overrides):
    family = get_family(family_name)
    values = {**family.presets["cpu"]["model"], **TINY[family_name], **overrides}
    params = family.Params(**values)
    assert family.check_params(params) == []
    return family, params


def batch_for(family, params, batch: int = 2) -> torch.Tensor:
    if family.data_kind == "video":
        shape = (batch, 3, params.frames, params.resolution, params.resolution)
    else:
        shape = (batch, 3, params.resolution, params.resolution)
    return torch.rand(shape) * 2 - 1


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, p in module.named_parameters() if torch.equal(p.detach(), before[name])]


# --------------------------------------------------------------------------------------------------
# Every family × every estimator
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator_name", estimators.names())
@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_family_trains_with_every_estimator(family_name, estimator_name):
    family, params = tiny_params(family_name)
    estimator = estimators.get(estimator_name)
    reason = family.refusal(estimator_name, estimator.kind)
    if estimator.kind == "decoder_aware":
        assert reason, f"{family_name} must refuse decoder-aware estimator {estimator_name}"
        with pytest.raises(ValueError, match="cannot use estimator"):
            family(params, estimator)
        return
    assert reason is None

    model = family(params, estimator)
    model.train()
    optimizers = model.configure_optimizers(TRAINING)
    assert set(optimizers) == {"autoencoder", "discriminator"}
    x = batch_for(family, params)
    encoder, decoder, disc = snapshot(model.encoder), snapshot(model.decoder), snapshot(model.discriminator)
    codebook = model.quantizer.embedding.detach().clone()

    logs0 = model.training_step(x, StepContext(0, 2, grad_clip=None), optimizers)
    assert unchanged(model.discriminator, disc) == list(disc), "the discriminator trained before disc_start"
    assert logs0["d_loss"] == 0.0 and logs0["disc_weight"] == 0.0
    logs1 = model.training_step(x, StepContext(1, 2, grad_clip=None), optimizers)

    for logs in (logs0, logs1):
        for key in ("loss", "rec_loss", "aux_loss", "g_loss", "d_loss", "disc_weight", "usage_batch",
                    "perplexity", "quant_error"):
            value = logs[key]  # a number, or a 0-dim tensor left on the device until the trainer reads it
            assert isinstance(value, float) or (torch.is_tensor(value) and value.dim() == 0), (key, value)
            assert math.isfinite(float(value)), (key, value)
    assert logs1["d_loss"] > 0.0 and logs1["disc_weight"] > 0.0
    assert unchanged(model.encoder, encoder) == []
    assert unchanged(model.decoder, decoder) == []
    # every discriminator weight; the last conv's bias may not move: at initialisation all logits are near 0,
    # where the hinge loss's gradient for that bias, ½(P[D(x̂) > −1] − P[D(x) < 1]), is exactly 0
    assert [n for n in unchanged(model.discriminator, disc) if n.endswith("weight")] == []
    assert not torch.equal(model.quantizer.embedding.detach(), codebook), "the codebook did not learn"


def test_vqgan_ema_codebook_updates_its_buffer():
    family, params = tiny_params("vqgan", codebook_learning="ema", disc_start=0)
    model = family(params, "ste")
    assert "embedding" in dict(model.quantizer.named_buffers())
    before = model.quantizer.embedding.clone()
    logs = model.training_step(batch_for(family, params), StepContext(0, 1), model.configure_optimizers(TRAINING))
    assert math.isfinite(logs["loss"])
    assert not torch.equal(model.quantizer.embedding, before)


@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_gan_families_declare_the_decoder_aware_refusal(family_name):
    family = get_family(family_name)
    assert "decoder_aware" in family.refused_estimators
    for name in estimators.names():
        if estimators.get(name).kind == "decoder_aware":
            assert family.refusal(name, "decoder_aware")


@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_no_discriminator_when_its_weight_is_zero(family_name):
    family, params = tiny_params(family_name, disc_weight=0.0, disc_start=0)
    model = family(params, "rotation")
    assert model.discriminator is None
    optimizers = model.configure_optimizers(TRAINING)
    assert set(optimizers) == {"autoencoder"}
    logs = model.training_step(batch_for(family, params), StepContext(0, 1), optimizers)
    assert logs["g_loss"] == 0.0 and logs["d_loss"] == 0.0


# --------------------------------------------------------------------------------------------------
# Evaluation (images and video), diagnostics
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_evaluate_reports_mse_and_generator_objective(family_name):
    family, params = tiny_params(family_name)
    model = family(params, "rotation").eval()
    batches = [batch_for(family, params), batch_for(family, params)]
    metrics = model.evaluate(iter(batches))
    for key in ("val_rec_loss", "val_loss", "val_psnr", "val_quant_error", "val_usage", "val_perplexity"):
        assert math.isfinite(metrics[key]), key
    with torch.no_grad():
        recon = [model(x)[0] for x in batches]
    mse = sum(float(F.mse_loss(r, x)) for r, x in zip(recon, batches)) / 2
    objective = sum(float(model.reconstruction_loss(x, r)) for r, x in zip(recon, batches)) / 2
    assert metrics["val_rec_loss"] == pytest.approx(mse, rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(objective, rel=1e-5)
    if family.data_kind == "video":
        assert recon[0].shape == batches[0].shape  # (B, 3, T, H, W): psnr/mse flatten(1) handles it


@pytest.mark.parametrize("family_name", ["vqgan", "timesformer_vqgan"])
def test_gradient_diagnostics_run(family_name):
    family, params = tiny_params(family_name)
    model = family(params, "rotation")
    result = gradient_diagnostics(model, batch_for(family, params))
    assert math.isfinite(result["grad_cosine_exact"])


# --------------------------------------------------------------------------------------------------
# Presets: latent shapes and the paper's Tables 8-11 values
# --------------------------------------------------------------------------------------------------

#: (family, preset) → latent (D, h, w) or (D, T', h, w) as each preset states it (paper Tables 8-11; ViT tokens
#: 256/8 = 32 per side of hidden 512, TimeSformer tokens 16 frames × 32 × 32 of hidden 256).
LATENT_SHAPES = {
    ("vqgan", "paper_taming"): (256, 16, 16),
    ("vqgan", "paper_taming_faces"): (256, 16, 16),
    ("vqgan", "paper_ldm_f4"): (3, 64, 64),
    ("vqgan", "paper_ldm_f8"): (4, 32, 32),
    ("vqgan", "cpu"): (16, 8, 8),
    ("vit_vqgan", "paper"): (512, 32, 32),
    ("vit_vqgan", "cpu"): (64, 8, 8),
    ("timesformer_vqgan", "paper_bair"): (256, 16, 32, 32),
    ("timesformer_vqgan", "paper_ucf101"): (256, 16, 32, 32),
    ("timesformer_vqgan", "cpu"): (64, 8, 8, 8),
}


def test_every_preset_is_listed_valid_and_sourced():
    listed = {(f, p) for f, p in LATENT_SHAPES}
    for family_name in GAN_FAMILIES:
        family = get_family(family_name)
        for preset_name, preset in family.presets.items():
            assert (family_name, preset_name) in listed
            assert set(preset) == {"model", "training", "source"} and preset["source"]
            assert family.check_params(family.Params(**preset["model"])) == [], (family_name, preset_name)


@pytest.mark.parametrize("family_name,preset_name", sorted(LATENT_SHAPES))
def test_latent_shape_of_each_preset(family_name, preset_name):
    """Encoder and decoder of the full-size model on the meta device (shapes only, no arithmetic)."""
    family = get_family(family_name)
    params = family.Params(**family.presets[preset_name]["model"])
    expected = LATENT_SHAPES[(family_name, preset_name)]
    assert family.latent_shape(params) == expected
    x_shape = batch_for(family, params, batch=1).shape
    with torch.device("meta"):
        encoder, decoder = family.build_encoder(params), family.build_decoder(params)
        z = encoder(torch.empty(x_shape))
        y = decoder(z)
    assert tuple(z.shape) == (1, *expected)
    assert y.shape == x_shape


@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_paper_models_build(family_name):
    """Every paper preset builds as a whole (on the meta device; LPIPS left out: it needs a weights file)."""
    family = get_family(family_name)
    for preset_name, preset in family.presets.items():
        params = family.Params(**{**preset["model"], "perceptual_weight": 0.0})
        with torch.device("meta"):
            model = family(params, "rotation")
        assert model.quantizer.num_codes == params.num_codes


@pytest.mark.parametrize("family_name", GAN_FAMILIES)
def test_cpu_preset_trains_at_its_size(family_name):
    family = get_family(family_name)
    params = family.Params(**family.presets["cpu"]["model"])
    model = family(params, "rotation")
    x = batch_for(family, params)
    logs = model.training_step(x, StepContext(params.disc_start, 100), model.configure_optimizers(TRAINING))
    assert math.isfinite(logs["loss"]) and logs["d_loss"] > 0
    assert tuple(model.encode(x).shape[1:]) == LATENT_SHAPES[(family_name, "cpu")]


# The training settings of the paper's Tables 8-11, restated here.
PAPER_SETTINGS = {
    # VQGAN (Table 2, 3): latent 16×16×256 K=1024 / 64×64×3 K=8192 / 32×32×4 K=16384; codebook weight 1.0,
    # disc weight 0.8 / 0.75 / 0.6, channel mult [1,1,2,2,4] / [1,2,4] / [1,2,2,4], batch 48 / 16 / 16,
    # lr 4.5e-6, codebook learned by gradient (no EMA), β = 0.25.
    ("vqgan", "paper_taming"): {
        "model": {"resolution": 256, "latent_dim": 256, "num_codes": 1024, "codebook_weight": 1.0, "disc_weight": 0.8,
                  "channel_mult": [1, 1, 2, 2, 4], "codebook_learning": "loss", "beta": 0.25, "channels": 128,
                  "num_res_blocks": 2, "attn_resolutions": [16], "perceptual_weight": 1.0, "disc_start": 250001},
        "training": {"batch_size": 48, "lr": 4.5e-6}},
    # Table 2's FFHQ + CelebA-HQ run: the same, the discriminator from step 30001 (taming's FacesHQ config).
    ("vqgan", "paper_taming_faces"): {
        "model": {"resolution": 256, "latent_dim": 256, "num_codes": 1024, "codebook_weight": 1.0, "disc_weight": 0.8,
                  "channel_mult": [1, 1, 2, 2, 4], "codebook_learning": "loss", "beta": 0.25, "channels": 128,
                  "num_res_blocks": 2, "attn_resolutions": [16], "perceptual_weight": 1.0, "disc_start": 30001},
        "training": {"batch_size": 48, "lr": 4.5e-6}},
    ("vqgan", "paper_ldm_f4"): {
        "model": {"resolution": 256, "latent_dim": 3, "num_codes": 8192, "codebook_weight": 1.0, "disc_weight": 0.75,
                  "channel_mult": [1, 2, 4], "codebook_learning": "loss", "beta": 0.25},
        "training": {"batch_size": 16, "lr": 4.5e-6}},
    ("vqgan", "paper_ldm_f8"): {
        "model": {"resolution": 256, "latent_dim": 4, "num_codes": 16384, "codebook_weight": 1.0, "disc_weight": 0.6,
                  "channel_mult": [1, 2, 2, 4], "codebook_learning": "loss", "beta": 0.25},
        "training": {"batch_size": 16, "lr": 4.5e-6}},
    # ViT-VQGAN (Table 4): 256² input, patch 8, hidden 512, MLP 1024 (the config says 2048), depth 8, 8 heads,
    # codebook dim 32 (l2-normalised, factorised), K = 8192, loss: codebook 1.0, log-Laplace 0, log-Gaussian 1.0,
    # perceptual 0.1, adversarial 0.1, batch 32, lr 1e-4, wd 1e-4.
    ("vit_vqgan", "paper"): {
        "model": {"resolution": 256, "patch_size": 8, "hidden_dim": 512, "mlp_dim": 1024, "depth": 8, "heads": 8,
                  "factorized_dim": 32, "lookup": "cosine", "num_codes": 8192, "codebook_weight": 1.0,
                  "loglaplace_weight": 0.0, "loggaussian_weight": 1.0, "perceptual_weight": 0.1,
                  "disc_weight": 0.1, "adaptive_disc_weight": False},
        "training": {"batch_size": 32, "lr": 1e-4, "weight_decay": 1e-4}},
    # TimeSformer-VQGAN (Table 5 / 11): BAIR 16×64×64×3 patch 2, UCF-101 16×128×128×3 patch 4; hidden 256,
    # MLP 768, depth 8, 4 heads, codebook dim 32, K = 1024 (BAIR) / 2048 (UCF; Table 5 says 1024),
    # lr 1e-4 / 4.5e-6.
    ("timesformer_vqgan", "paper_bair"): {
        "model": {"frames": 16, "resolution": 64, "patch_size": 2, "hidden_dim": 256, "mlp_dim": 768, "depth": 8,
                  "heads": 4, "factorized_dim": 32, "lookup": "cosine", "num_codes": 1024},
        "training": {"lr": 1e-4}},
    ("timesformer_vqgan", "paper_ucf101"): {
        "model": {"frames": 16, "resolution": 128, "patch_size": 4, "hidden_dim": 256, "mlp_dim": 768, "depth": 8,
                  "heads": 4, "factorized_dim": 32, "lookup": "cosine", "num_codes": 2048},
        "training": {"lr": 4.5e-6}},
}


@pytest.mark.parametrize("family_name,preset_name", sorted(PAPER_SETTINGS))
def test_paper_preset_matches_notes(family_name, preset_name):
    preset = get_family(family_name).presets[preset_name]
    expected = PAPER_SETTINGS[(family_name, preset_name)]
    for section in ("model", "training"):
        for key, value in expected[section].items():
            assert preset[section][key] == value, (section, key)


def test_every_paper_preset_is_checked_against_notes():
    papers = {(f, p) for f in GAN_FAMILIES for p in get_family(f).presets if p.startswith("paper")}
    assert papers == set(PAPER_SETTINGS)


def test_check_params_flags_impossible_combinations():
    cases = [
        ("vqgan", dict(resolution=30, channel_mult=[1, 2, 2]), "not divisible"),
        ("vqgan", dict(resolution=16, disc_layers=3), "too small"),
        ("vqgan", dict(l1_weight=0.0, l2_weight=0.0, perceptual_weight=0.0), "empty"),
        ("vqgan", dict(disc_norm="layer"), "disc_norm"),
        ("vit_vqgan", dict(resolution=18), "patch_size"),
        ("vit_vqgan", dict(hidden_dim=30, heads=4), "heads"),
        ("vit_vqgan", dict(pos_embedding="sincos", hidden_dim=34, heads=2), "divisible by 4"),
        ("vit_vqgan", dict(factorized_dim=64), "factorized_dim"),
        ("timesformer_vqgan", dict(frames=5, temporal_patch_size=2), "frames"),
    ]
    for family_name, overrides, fragment in cases:
        family = get_family(family_name)
        params = family.Params(**{**family.presets["cpu"]["model"], **TINY[family_name], **overrides})
        problems = family.check_params(params)
        assert any(fragment in p for p in problems), (family_name, overrides, problems)


# --------------------------------------------------------------------------------------------------
# The adaptive discriminator weight
# --------------------------------------------------------------------------------------------------

def test_adaptive_weight_matches_a_hand_computation():
    family, params = tiny_params("vqgan", disc_start=0, l1_weight=1.0, l2_weight=1.0, disc_weight=0.8)
    model = family(params, "ste").train()
    x = batch_for(family, params)
    reference = copy.deepcopy(model)

    z = reference.encoder(x)
    out = reference.quantizer(z)
    x_hat = reference.decoder(out.decoder_input)
    rec = (x_hat - x).abs().mean() + ((x_hat - x) ** 2).mean()
    adv = -reference.discriminator(x_hat).mean()
    last = reference.decoder.conv_out.weight
    (grad_rec,) = torch.autograd.grad(rec, last, retain_graph=True)
    (grad_adv,) = torch.autograd.grad(adv, last)
    expected = 0.8 * min(max(float(grad_rec.norm() / (grad_adv.norm() + 1e-4)), 0.0), 1e4)

    logs = model.training_step(x, StepContext(0, 1), model.configure_optimizers(TRAINING))
    assert logs["disc_weight"] == pytest.approx(expected, rel=1e-5)
    assert logs["rec_loss"] == pytest.approx(float(rec.detach()), rel=1e-6)
    assert logs["g_loss"] == pytest.approx(float(adv.detach()), rel=1e-5)


def test_adaptive_weight_is_clamped():
    last = torch.nn.Parameter(torch.ones(3))
    huge = adaptive_weight((last * 1e12).sum(), (last * 0.0).sum(), last)
    assert float(huge) == 1e4
    assert not huge.requires_grad


def test_vit_adversarial_weight_is_fixed():
    family, params = tiny_params("vit_vqgan", disc_start=0, disc_weight=0.1)
    model = family(params, "ste")
    logs = model.training_step(batch_for(family, params), StepContext(0, 1), model.configure_optimizers(TRAINING))
    assert logs["disc_weight"] == pytest.approx(0.1)


@pytest.mark.parametrize("norm", NORMS)
def test_patchgan_discriminator_layout(norm):
    disc = NLayerDiscriminator(3, channels=8, n_layers=3, norm=norm)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(4, 4)] * 5
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 1]
    assert all(m.negative_slope == 0.2 for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU))
    if norm == "batch":
        assert all(c.bias is None for c in convs[1:4])
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules()) == 3
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, output_size(32, 3), output_size(32, 3)) == (2, 1, 2, 2)
    assert output_size(256, 3) == 30  # taming's 30×30 patch logits at 256²


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert float(discriminator_loss(real, fake, "hinge")) == pytest.approx(0.5 * (0.25 + 0.5))
    assert float(generator_loss(fake)) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Divided space-time attention
# --------------------------------------------------------------------------------------------------

def _changed_tokens(sublayer, x, frame, position):
    perturbed = x.clone()
    perturbed[0, frame, position] += torch.randn(x.shape[-1])  # not a constant: LayerNorm would erase it
    with torch.no_grad():
        delta = sublayer(perturbed) - sublayer(x)
    return delta.abs().amax(-1)[0] > 1e-6  # (frames, positions)


def test_space_attention_stays_within_a_frame():
    block = DividedSpaceTimeBlock(dim=16, heads=2, mlp_dim=32)
    x = torch.randn(1, 3, 5, 16)  # (B, T, N, D)
    changed = _changed_tokens(block.space_attention, x, frame=1, position=2)
    expected = torch.zeros(3, 5, dtype=torch.bool)
    expected[1, :] = True  # every patch of frame 1, nothing in the other frames
    assert torch.equal(changed, expected)


def test_time_attention_stays_at_a_patch_position():
    block = DividedSpaceTimeBlock(dim=16, heads=2, mlp_dim=32)
    x = torch.randn(1, 3, 5, 16)
    changed = _changed_tokens(block.time_attention, x, frame=1, position=2)
    expected = torch.zeros(3, 5, dtype=torch.bool)
    expected[:, 2] = True  # position 2 in every frame, no other position
    assert torch.equal(changed, expected)


def test_a_full_divided_block_mixes_space_and_time():
    block = DividedSpaceTimeBlock(dim=16, heads=2, mlp_dim=32)
    changed = _changed_tokens(block, torch.randn(1, 3, 5, 16), frame=1, position=2)
    assert bool(changed.all())  # time then space reaches every token
    family, params = tiny_params("timesformer_vqgan")
    model = family(params, "ste")
    assert all(isinstance(b, DividedSpaceTimeBlock) for b in model.encoder.transformer.blocks)
    assert all(isinstance(b, DividedSpaceTimeBlock) for b in model.decoder.transformer.blocks)


@pytest.mark.parametrize("spatial,patch", [((8, 12), (4, 2)), ((4, 8, 8), (2, 4, 4))])
def test_patchify_round_trip(spatial, patch):
    x = torch.randn(2, 3, *spatial)
    tokens = patchify(x, patch)
    grid = tuple(s // p for s, p in zip(spatial, patch))
    assert tokens.shape == (2, math.prod(grid), 3 * math.prod(patch))
    assert torch.equal(unpatchify(tokens, 3, grid, patch), x)


# --------------------------------------------------------------------------------------------------
# Perceptual loss with a stand-in weights file
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    """Random VGG16 trunk + non-negative random heads, saved like the real file (keys vgg.*, heads.*)."""
    torch.manual_seed(1)
    state = LPIPS(load=False).state_dict()
    state = {k: (v.abs() if k.startswith("heads.") else v) for k, v in state.items()}
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg.pth"
    torch.save(state, path)
    return str(path)


def test_lpips_is_zero_on_identical_images_and_grows_with_noise(lpips_file):
    lpips = LPIPS(lpips_file)
    assert not any(p.requires_grad for p in lpips.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn_like(x)
    same = lpips(x, x)
    assert same.shape == (2,) and torch.equal(same, torch.zeros(2))
    small, large = lpips(x, x + 0.05 * noise), lpips(x, x + 0.5 * noise)
    assert bool((small > 0).all()) and bool((large > small).all())


def test_vqgan_trains_with_the_perceptual_loss(lpips_file):
    family, params = tiny_params("vqgan", resolution=32, perceptual_weight=1.0, perceptual_weights=lpips_file,
                                 disc_start=0)
    model = family(params, "rotation")
    x = batch_for(family, params)
    decoder = snapshot(model.decoder)
    with torch.no_grad():
        x_hat = model(x)[0]
        pixels = float(model.pixel_loss(x, x_hat))
        with_lpips = float(model.reconstruction_loss(x, x_hat))
    assert with_lpips > pixels  # the perceptual term is part of L_rec
    logs = model.training_step(x, StepContext(0, 1), model.configure_optimizers(TRAINING))
    assert all(math.isfinite(v) for v in logs.values())
    assert unchanged(model.decoder, decoder) == []
    assert not any("perceptual" in name for name, p in model.named_parameters() if p.requires_grad)


def test_perceptual_weights_from_the_environment(lpips_file, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, lpips_file)
    family, params = tiny_params("vqgan", resolution=32, perceptual_weight=0.5)
    assert isinstance(family(params, "ste").perceptual, LPIPS)


def test_missing_perceptual_weights_fail_clearly_at_build_time(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    family, params = tiny_params("vqgan", resolution=32, perceptual_weight=1.0)
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV) as error:
        family(params, "ste")
    assert "vgg.pth" in str(error.value) and "heads." in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, wrong)
    with pytest.raises(ValueError, match="wrong keys"):
        LPIPS(str(wrong))


def test_gan_families_share_one_adversarial_step():
    for family_name in GAN_FAMILIES:
        family = get_family(family_name)
        assert issubclass(family, AdversarialVQAutoencoder)
        assert family.training_step is AdversarialVQAutoencoder.training_step
