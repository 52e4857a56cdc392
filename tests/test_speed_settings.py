"""The speed settings of README "Training on GPUs", checked on the CPU: `training.compile` and its refusal,
the attention paths of the taming CNN, sync-free step logs (`FiniteWatch`) and divergence, the sync-free
near-opposite recomputation of the rotation backward, code counts without bincount, and scripts/gpu_check.sh.
The same settings on a GPU are tests/test_cuda.py's."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers_harness import ROOT, TINY_BASE, tiny_raw, write_yaml

import estimators
from estimators import rotation_math
from harness.config import ConfigError, RunConfig
from harness.data.loading import to_device
from harness.status import RunStatus
from harness.suite import load_suite
from harness.train import FiniteWatch, Trainer, train_run
from models import get_family
from models.quantizer import code_counts
from models.taming_cnn import AttentionBlock, spatial_attention


def _resolved(**training) -> dict:
    resolved = copy.deepcopy(TINY_BASE)
    resolved["training"].update(training)
    resolved["seed"] = 0
    return resolved


def _run(tmp_path: Path, name: str, **base):
    raw = tiny_raw(name, base=base)
    spec = load_suite(write_yaml(tmp_path / f"{name}.yaml", raw)).runs[0]
    return spec.config, tmp_path / name


# -- training.compile --------------------------------------------------------------------------------------

def test_compile_is_refused_at_load_with_an_estimator_that_needs_a_double_backward():
    resolved = _resolved(compile=True)
    resolved["estimator"] = {"name": "hessian"}
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_resolved(resolved, where="suite.yaml")
    (line,) = [p for p in caught.value.problems if "training.compile" in p]
    assert line.startswith("suite.yaml: training.compile:")
    assert "'hessian'" in line and "double backward" in line and "training.compile: false" in line
    for name in ("rotation", "exact", "ste"):  # exact's second decoder pass is first-order: allowed
        resolved["estimator"] = {"name": name}
        assert RunConfig.from_resolved(resolved).training.compile is True
    assert [n for n in estimators.names() if estimators.estimator_class(n).needs_double_backward] == ["hessian"]


@pytest.mark.slow
def test_compiled_run_matches_the_uncompiled_run(tmp_path, monkeypatch):
    """torch.compile through dynamo and AOT autograd (the aot_eager backend: the C++ code generation of the
    default backend takes minutes on a CPU; tests/test_cuda.py compiles with it on the GPU)."""
    results = {}
    for compile in (False, True):
        config, directory = _run(tmp_path, f"compile_{compile}", training={"steps": 3, "compile": compile},
                                 metrics={"diagnostics": False})
        if compile:
            original = torch.nn.Module.compile
            monkeypatch.setattr(torch.nn.Module, "compile",
                                lambda self, *args, **kwargs: original(self, backend="aot_eager"))
        results[compile] = train_run(config, directory, progress=False)
    plain, compiled = results[False], results[True]
    assert compiled.status == RunStatus.FINISHED and compiled.notes["speed"] == {"compiled": ["encoder", "decoder"]}
    assert "speed" not in plain.notes  # on the CPU without compile nothing is applied, nothing recorded
    for key in ("train_loss", "train_rec_loss", "val_rec_loss", "val_psnr"):
        assert compiled.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-4), key


def test_cpu_runs_keep_the_default_memory_format_and_record_no_speed_settings(tmp_path):
    config, directory = _run(tmp_path, "cpu", training={"steps": 1})
    trainer = Trainer(config, directory, progress=False)
    trainer.build()
    assert trainer.speed == {}
    batch = next(iter(trainer.train_batches()))
    assert batch.is_contiguous() and trainer.fixed_batch.is_contiguous()
    assert all(p.is_contiguous() for p in trainer.model.parameters())


def test_device_transfer_gives_channels_last_image_batches_and_leaves_video_alone():
    images = [torch.randn(3, 8, 8) for _ in range(2)]
    batch = to_device(torch.stack(images), torch.device("cpu"), torch.channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    assert torch.equal(batch, torch.stack(images))
    clips = [torch.randn(3, 2, 8, 8) for _ in range(2)]
    assert to_device(torch.stack(clips), torch.device("cpu"), torch.channels_last).is_contiguous()


def test_convolutional_families_ask_for_channels_last_and_name_their_compiled_networks():
    assert get_family("vqvae").channels_last and get_family("vqgan").channels_last
    assert not get_family("vit_vqgan").channels_last
    assert get_family("vqvae").compiled_modules == ("encoder", "decoder")
    assert get_family("vqgan").compiled_modules == ("encoder", "decoder", "discriminator")


# -- attention -------------------------------------------------------------------------------------------

def test_fused_and_explicit_attention_agree_in_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    operands = [torch.randn(2, 16, 8, dtype=torch.float64, generator=generator, requires_grad=True)
                for _ in range(3)]
    weights = torch.randn(2, 16, 8, dtype=torch.float64, generator=generator)
    outputs, gradients = {}, {}
    for fused in (True, False):
        outputs[fused] = spatial_attention(*operands, fused=fused)
        gradients[fused] = torch.autograd.grad((outputs[fused] * weights).sum(), operands)
    torch.testing.assert_close(outputs[True], outputs[False], rtol=1e-12, atol=1e-12)
    for fused_grad, explicit_grad in zip(gradients[True], gradients[False]):
        torch.testing.assert_close(fused_grad, explicit_grad, rtol=1e-12, atol=1e-12)


def test_explicit_attention_is_twice_differentiable():
    q, k, v = (torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradgradcheck(lambda a, b, c: spatial_attention(a, b, c, fused=False), (q, k, v))


@pytest.mark.parametrize("estimator, double_backward", [("hessian", True), ("exact", False), ("rotation", False),
                                                         ("ste", False)])
def test_vqvae_writes_attention_out_only_for_a_double_backward(estimator, double_backward):
    family = get_family("vqvae")
    params = family.Params(resolution=16, channels=8, channel_mult=[1, 2], num_codes=16, latent_dim=4,
                           attn_resolutions=[8])
    model = family(params, estimators.get(estimator))
    blocks = [m for m in model.modules() if isinstance(m, AttentionBlock)]
    assert len(blocks) == 5  # the mid blocks, and attention at resolution 8: 1 in the encoder, 2 in the decoder
    assert all(block.double_backward is double_backward for block in blocks)
    cuda = torch.device("cuda")
    assert all(block.fused_on(cuda) is not double_backward for block in blocks)
    assert not any(block.fused_on(torch.device("cpu")) for block in blocks)  # CPU results stay as they were


# -- sync-free step logs ---------------------------------------------------------------------------------

def test_finite_watch_keeps_the_first_non_finite_step_and_reads_logs_as_float_would():
    watch = FiniteWatch(torch.device("cpu"))
    logs = {"loss": torch.tensor(0.1, dtype=torch.float32), "usage": torch.tensor(0.3, dtype=torch.bfloat16),
            "g_loss": 0.0}
    watch.observe(0, logs)
    first, read = watch.read(logs)
    assert first is None
    assert read == {"loss": float(logs["loss"]), "usage": float(logs["usage"]), "g_loss": 0.0}
    watch.observe(1, {"loss": torch.tensor(float("nan"))})
    watch.observe(2, {"loss": torch.tensor(1.0), "other": float("inf")})
    watch.observe(3, logs)
    assert watch.read()[0] == 1


def test_a_diverged_run_reports_its_first_non_finite_step_read_at_the_next_log_step(tmp_path, monkeypatch):
    """lr 1e30: step 0 is finite, step 1 is not; with log_every 5 it is read at step 5, still reported as 1."""
    reads = []
    original = FiniteWatch.read
    monkeypatch.setattr(FiniteWatch, "read", lambda self, logs=None: reads.append(1) or original(self, logs))
    config, directory = _run(tmp_path, "diverges", training={"steps": 8, "lr": 1e30, "log_every": 5})
    result = train_run(config, directory, progress=False)
    assert result.status == RunStatus.DIVERGED
    assert result.diverged_at == 1 and result.step == 1 and result.metrics == {"steps": 1}
    assert len(reads) == 3  # step 0 (logged), step 5 (logged: diverged), and the result's read


def test_step_logs_are_read_only_at_log_evaluation_and_checkpoint_steps(tmp_path, monkeypatch):
    read_at = []
    original = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, step, batch: read_at.append(step) or original(self, step, batch))
    reads = []
    original_read = FiniteWatch.read
    monkeypatch.setattr(FiniteWatch, "read",
                        lambda self, logs=None: reads.append(read_at[-1]) or original_read(self, logs))
    config, directory = _run(tmp_path, "reads", training={"steps": 9, "log_every": 4, "checkpoint_every": 7,
                                                          "eval_every": 3, "eval_batches": 1},
                             metrics={"diagnostics": False})
    result = train_run(config, directory, progress=False)
    assert result.status == RunStatus.FINISHED
    assert reads == [0, 3, 4, 6, 8]  # logs 0, 4, 8 (last); evaluations 3, 6; checkpoint after step 6
    rows = (directory / "history.csv").read_text().splitlines()
    assert sum(line.startswith("train,") for line in rows) == 3


# -- the rotation backward's near-opposite tokens, sync-free ------------------------------------------

@pytest.mark.parametrize("scale", ["norm_ratio", "one", "inverse_sq_distance"])
@pytest.mark.parametrize("radial_removed", [False, True])
def test_near_opposite_recomputation_is_the_same_with_torch_where(scale, radial_removed):
    generator = torch.Generator().manual_seed(1)
    e = torch.randn(64, 8, generator=generator)
    q = torch.randn(64, 8, generator=generator)
    q[::5] = -e[::5] * 1.3 + 3e-2 * torch.randn(13, 8, generator=generator)  # 1 + cos(e, q) ≈ 1e-4
    g = torch.randn(64, 8, generator=generator)
    out, one_plus_cos = rotation_math._rotation_backward_eager(g, e, q, scale, radial_removed)
    assert (one_plus_cos < rotation_math.NEAR_OPPOSITE).sum() == 13
    in_place = rotation_math._recompute_near_opposite(out.clone(), one_plus_cos, g, e, q, scale, radial_removed,
                                                      sync_free=False)
    selected = rotation_math._recompute_near_opposite(out.clone(), one_plus_cos, g, e, q, scale, radial_removed,
                                                      sync_free=True)
    assert torch.equal(in_place, selected)
    assert not torch.equal(in_place, out)


def test_code_counts_equal_bincount():
    indices = torch.tensor([3, 0, 3, 3, 7, 0])
    assert torch.equal(code_counts(indices, 9), torch.bincount(indices, minlength=9).float())
    assert code_counts(indices, 9, torch.float64).dtype == torch.float64


# -- scripts/gpu_check.sh --------------------------------------------------------------------------------

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_gpu_check_script_parses_and_names_every_paper_table_suite():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    table_suites = sorted(path.stem for path in (ROOT / "suites").glob("*.yaml")
                          if (yaml.safe_load(path.read_text()).get("paper") or {}).get("table"))
    assert {"table1_vqvae", "table2_vqgan", "table5_video", "appendix_a9"} <= set(table_suites)
    for suite in table_suites:
        assert f" {suite}" in text, f"scripts/gpu_check.sh does not estimate suite {suite}"
    for part in ("-m cuda", "benchmarks.report --device cuda", "--profile paper --estimate", "timeout "):
        assert part in text, part
