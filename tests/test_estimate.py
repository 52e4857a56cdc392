"""`run-suite --estimate` (harness/estimate.py): configurations grouped by cost, steps per run counted as the
trainer counts them, timings positive and consistent with the projected hours, and the does-not-fit paths."""
from __future__ import annotations

import math
import os

import pytest
import torch

from harness import estimate
from harness.cli import run_suite_main
from harness.suite import load_suite
from harness.train import total_steps

# the table2 cpu profile, shrunk: 2 configurations (two datasets; STE and the rotation trick cost the same) of
# 6 runs each, the discriminator switching on at step 20 of 200
TINY = ["training.batch_size=2", "model.channels=8", "model.disc_channels=8"]


@pytest.fixture(scope="module")
def tiny_suite():
    return load_suite("table2_vqgan", profile="cpu", overrides=TINY)


@pytest.fixture(scope="module")
def tiny_estimates(tiny_suite):
    torch.manual_seed(0)
    return estimate.estimate_suite(tiny_suite, timed_steps=1)


def test_runs_that_differ_by_seed_or_by_an_estimator_of_the_same_cost_count_once():
    suite = load_suite("table1_vqvae", profile="cpu")
    groups = estimate.configurations(suite)
    assert sum(g.runs for g in groups) == len(suite.runs) == 39
    # 4 settings × {ste, rotation} × 3 seeds; gumbel on one setting; hessian and exact on two settings, together
    assert sorted(g.runs for g in groups) == [3] + [6] * 6
    transport = [g for g in groups if g.label.endswith("rotation/ste")]
    assert len(transport) == 4 and all(g.runs == 6 for g in transport)
    assert sum(g.label.endswith("exact/hessian") for g in groups) == 2
    assert len({g.label for g in groups}) == len(groups)


def test_each_configuration_is_timed_with_positive_finite_numbers_consistent_with_the_hours(tiny_suite,
                                                                                            tiny_estimates):
    assert len(tiny_estimates) == 2 and [e.runs for e in tiny_estimates] == [6, 6]
    for e in tiny_estimates:
        assert e.problem is None
        assert e.batch_size == 2 and e.steps == 200
        for value in (e.step_s, e.images_per_s, e.hours_per_run, e.peak_bytes):
            assert math.isfinite(value) and value > 0, e
        assert e.images_per_s == pytest.approx(2 / e.step_s)
        assert e.hours_per_run == pytest.approx(e.step_s * 200 / 3600)
        assert "discriminator from step 20" in e.steps_source
    table = estimate.estimate_table(tiny_suite, tiny_estimates, 1)
    lines = table.splitlines()
    assert "cpu" in lines[0] and "peak RSS growth" in lines[0]
    rows = [line for line in lines if line.startswith("data=")]
    assert len(rows) == 2 and "natural_patches" in rows[0] and "digits" in rows[1]
    total = sum(e.hours_per_run * e.runs for e in tiny_estimates)
    assert lines[-1] == f"total: {total:,.1f} device-hours for 12 run(s)"


def test_run_suite_estimate_prints_the_table_and_trains_nothing(tmp_path, capsys):
    status = run_suite_main(["table5_video", "--profile", "cpu", "--estimate", "--estimate-steps", "1",
                             "--out", str(tmp_path), "--set", "training.batch_size=1",
                             "--set", "model.disc_channels=8"])
    assert status == 0
    out = capsys.readouterr().out
    assert "estimate of suite table5_video, profile cpu" in out
    assert "total:" in out and "for 6 run(s)" in out
    assert not any(tmp_path.iterdir())


def test_steps_per_run_of_a_paper_profile_use_the_documented_size_when_the_data_is_not_here():
    suite = load_suite("table2_vqgan", profile="paper", check_data=False)
    by_root = {spec.config.data.params.root: spec.config for spec in suite.runs}
    imagenet, faces = by_root["/path/to/imagenet"], by_root["/path/to/ffhq_celebahq"]
    assert estimate.run_steps(imagenet)[0] == total_steps(imagenet.training, 1_281_167) == 533_820
    assert estimate.run_steps(faces)[0] == total_steps(faces.training, 85_000)
    assert "documented" in estimate.run_steps(faces)[1]


def test_a_run_whose_data_is_neither_here_nor_documented_has_no_projected_hours():
    suite = load_suite("table4_vit_vqgan", profile="paper", check_data=False,
                       overrides=["data.root=/nowhere/my_images"])
    steps, source = estimate.run_steps(suite.runs[0].config)
    assert steps is None and "set training.steps" in source and "/nowhere/my_images" in source


def test_a_step_that_runs_out_of_device_memory_is_reported_as_not_fitting(tiny_suite, monkeypatch):
    def out_of_memory(self, step, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(estimate.StepTimer, "step", out_of_memory)
    result = estimate.estimate_configuration(estimate.configurations(tiny_suite)[0], timed_steps=1)
    assert result.problem.startswith("does not fit at batch 2 on cpu")
    assert result.step_s is None and result.hours_per_run is None
    table = estimate.estimate_table(tiny_suite, [result], 1)
    assert "does not fit at batch 2" in table and "6 run(s) not estimated" in table


def test_on_the_cpu_a_batch_projected_beyond_the_available_memory_is_not_run(tiny_suite, monkeypatch):
    monkeypatch.setattr(estimate, "available_host_bytes", lambda: 1024)
    timed = []
    monkeypatch.setattr(estimate.StepTimer, "time_steps", lambda *args: timed.append(args) or 1.0)
    result = estimate.estimate_configuration(estimate.configurations(tiny_suite)[0], timed_steps=1)
    assert result.problem.startswith("does not fit at batch 2: needs about")
    assert "GiB available" in result.problem and not timed


def test_input_shapes_come_from_the_data_section():
    video = load_suite("table5_video", profile="cpu").runs[0].config
    assert estimate.input_shape(video) == (3, 8, 32, 32)
    image = load_suite("table2_vqgan", profile="paper", check_data=False).runs[0].config
    assert estimate.input_shape(image) == (3, 256, 256)
    points = load_suite("appendix_a2", profile="cpu").runs[0].config
    assert estimate.input_shape(points) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without a GPU")
def test_a_cuda_profile_is_timed_on_the_cpu_of_a_machine_without_a_gpu_and_says_so():
    config = load_suite("table2_vqgan", profile="paper", check_data=False).runs[0].config
    device, note = estimate.estimate_device(config)
    assert device.type == "cpu" and "timed on the CPU" in note


def test_missing_lpips_weights_are_replaced_by_random_ones_of_the_same_cost_for_the_block(monkeypatch):
    from models import perceptual

    monkeypatch.delenv(perceptual.WEIGHTS_ENV, raising=False)
    config = load_suite("table2_vqgan", profile="paper", check_data=False).runs[0].config
    with estimate.stand_in_perceptual_weights(config) as stand_in:
        assert stand_in
        perceptual.LPIPS(config.model.params.perceptual_weights)  # loads: the right keys, heads ≥ 0
    assert perceptual.WEIGHTS_ENV not in os.environ
    cpu = load_suite("table2_vqgan", profile="cpu").runs[0].config  # no perceptual loss: nothing to stand in for
    with estimate.stand_in_perceptual_weights(cpu) as stand_in:
        assert not stand_in


def test_estimate_steps_must_be_positive(capsys):
    assert run_suite_main(["table2_vqgan", "--estimate", "--estimate-steps", "0"]) == 2
    assert "--estimate-steps must be at least 1" in capsys.readouterr().err


def test_a_data_parallel_run_is_timed_at_one_process_slice_and_billed_for_every_process(monkeypatch):
    """training.world_size × the SLURM job's tasks processes share the global batch (README "Several GPUs and
    nodes"): the step is timed at one process's slice, throughput and device-hours count every process."""
    suite = load_suite("table1_vqvae", profile="cpu",
                       overrides=["training.batch_size=8", "training.world_size=2", "training.steps=10"])
    configuration = estimate.configurations(suite)[0]
    assert configuration.processes == 2
    timed = []
    monkeypatch.setattr(estimate, "_time_phases", lambda config, batch_size, *rest: (timed.append(batch_size),
                                                                                      (0.5, 1000))[1])
    monkeypatch.setattr(estimate, "projected_host_bytes", lambda *args: 0)
    result = estimate.estimate_configuration(configuration, timed_steps=1)
    assert timed == [4] and result.batch_size == 4 and result.processes == 2
    assert "per process: batch 4 of 8 over 2 processes" in result.steps_source
    assert result.images_per_s == pytest.approx(8 / 0.5)
    assert result.device_hours_per_run == pytest.approx(2 * 0.5 * 10 / 3600)
    total_line = estimate.estimate_table(suite, [result], 1).splitlines()[-1]
    assert total_line.startswith(f"total: {2 * 0.5 * 10 / 3600 * result.runs:,.1f} device-hours")
