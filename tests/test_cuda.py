"""The GPU paths (README "Training on GPUs"): every family trains in bf16 on CUDA, the transport estimators'
gradients on CUDA match the float64 closed forms, the fused (compiled) backward runs on CUDA, the fidelity
metrics run on CUDA, and a run with the speed settings and `training.compile` finishes. Marked `cuda` and
skipped, with the reason, where torch.cuda.is_available() is False (scripts/gpu_check.sh runs them)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import TRANSPORT_CONFIGS, config_id
from helpers_harness import tiny_raw, write_yaml
from test_families import TINY, batch_for
from test_fidelity import _build_standin_inception_state_dict, _noisy, _smooth_images, _TinyI3D

import estimators
from harness.fidelity import INCEPTION_WEIGHTS_FILENAME, image_fidelity, video_fidelity
from harness.status import RunStatus
from harness.suite import load_suite
from harness.train import train_run
from models import get_family
from models.base import StepContext

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")]

CUDA = torch.device("cuda")
TRAINING = type("Training", (), dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0))
#: The VQ families, with the tiny sizes of tests/test_families.py (vqvae: the tiny harness suite's).
TINY_VQ = {**TINY, "vqvae": dict(resolution=16, channels=8, channel_mult=[1, 2], num_codes=16, latent_dim=4,
                                 attn_resolutions=[8])}


def _bf16():
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


@pytest.mark.parametrize("estimator", ["ste", "rotation"])
@pytest.mark.parametrize("family_name", sorted(TINY_VQ))
def test_every_family_trains_a_few_bf16_steps_with_finite_losses(family_name, estimator):
    family = get_family(family_name)
    params = family.Params(**{**family.presets["cpu"]["model"], **TINY_VQ[family_name]})
    model = family(params, estimator).to(CUDA)
    optimizers = model.configure_optimizers(TRAINING)
    x = batch_for(family, params, batch=4).to(CUDA)
    for step in range(3):
        logs = model.training_step(x, StepContext(step, 3, autocast=_bf16), optimizers)
        assert all(not torch.is_tensor(v) or v.device == CUDA for v in logs.values())  # read later
        assert all(math.isfinite(float(v)) for v in logs.values()), (step, logs)


@pytest.mark.parametrize("config", [c for c in TRANSPORT_CONFIGS if c[0] != "rotation_through_r"],
                         ids=[config_id(*c) for c in TRANSPORT_CONFIGS if c[0] != "rotation_through_r"])
@pytest.mark.parametrize("mode", ["off", "on"])
def test_transport_gradients_on_cuda_match_the_float64_closed_forms(config, mode, reference_gradient):
    """Eager ("off") and compiled ("on", estimators/fused.py) backward on CUDA, near-opposite tokens included
    (the sync-free torch.where recomputation)."""
    name, params = config
    generator = torch.Generator().manual_seed(3)
    e = torch.randn(256, 16, generator=generator)
    q = torch.randn(256, 16, generator=generator)
    q[::7] = -e[::7] * 0.8 + 3e-2 * torch.randn(q[::7].shape, generator=generator)
    g = torch.randn(256, 16, generator=generator)
    estimators.set_fused_backward(mode)
    try:
        e_cuda = e.to(CUDA).requires_grad_(True)
        out = estimators.get(name, **params).transport(e_cuda, q.to(CUDA))
        (grad,) = torch.autograd.grad(out, e_cuda, g.to(CUDA))
    finally:
        estimators.set_fused_backward(None)
    expected = reference_gradient(name, params, e, q, g)
    torch.testing.assert_close(grad.cpu().double(), expected, rtol=2e-3, atol=2e-4)


def test_fidelity_metrics_run_on_cuda(tmp_path):
    weights = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save(_build_standin_inception_state_dict(), weights)
    images = _smooth_images(12, 32, seed=0)
    same = image_fidelity(images, images, weights_path=str(weights), device="cuda")
    noisy = image_fidelity(images, _noisy(images, 0.3, seed=7), weights_path=str(weights), device="cuda")
    on_cpu = image_fidelity(images, _noisy(images, 0.3, seed=7), weights_path=str(weights), device="cpu")
    assert abs(same.r_fid) < 1e-3 < noisy.r_fid
    assert noisy.r_fid == pytest.approx(on_cpu.r_fid, rel=0.05)

    i3d = tmp_path / "i3d.pt"
    with warnings.catch_warnings():  # torch.jit.* emit FutureWarnings in recent torch
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_TinyI3D().eval()), str(i3d))
    videos = torch.rand(16, 3, 4, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    fvd_same = video_fidelity(videos, videos, i3d_path=str(i3d), device="cuda")
    fvd_noisy = video_fidelity(videos, _noisy(videos, 0.5, seed=1), i3d_path=str(i3d), device="cuda")
    assert abs(fvd_same.r_fvd) < 1e-4 < fvd_noisy.r_fvd


@pytest.mark.parametrize("family, compile", [("vqvae", False), ("vqvae", True), ("vqgan", True)])
def test_a_cuda_run_applies_the_speed_settings_and_compiles(tmp_path, family, compile):
    base = {"training": {"device": "cuda", "precision": "bf16", "steps": 4, "compile": compile}}
    if family == "vqgan":
        base["model"] = {"family": "vqgan", "preset": "cpu", **TINY["vqgan"]}
    raw = tiny_raw(f"cuda_{family}_{compile}", base=base)
    spec = load_suite(write_yaml(tmp_path / "cuda.yaml", raw)).runs[0]
    result = train_run(spec.config, tmp_path / "run", progress=False)
    assert result.status == RunStatus.FINISHED, result
    speed = result.notes["speed"]
    assert speed["tf32"] and speed["cudnn_benchmark"] and speed["channels_last"]
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    expected = list(get_family(family).compiled_modules) if compile else None
    assert speed.get("compiled") == expected
    assert all(math.isfinite(result.metrics[k]) for k in ("train_loss", "val_rec_loss", "grad_cosine_exact"))


def test_compiled_decoder_backward_matches_eager_on_cuda():
    family = get_family("vqvae")
    params = family.Params(**{**family.presets["cpu"]["model"], **TINY_VQ["vqvae"]})
    torch.manual_seed(0)
    eager = family(params, "rotation").to(CUDA)
    compiled = family(params, "rotation").to(CUDA)
    compiled.load_state_dict(eager.state_dict())
    assert compiled.compile_modules() == ["encoder", "decoder"]
    x = batch_for(family, params, batch=4).to(CUDA)
    grads = []
    for model in (eager, compiled):
        loss, _ = model.autoencoder_loss(x)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)
