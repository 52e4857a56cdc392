"""Every suite's `paper` profile against the paper's schedule (paper Tables 8-11), and the table suites' paper
profiles as SLURM submissions (README "Running on a cluster").

A scheduled switch — the end of the learning-rate warmup, the step the discriminator starts — must happen within
the run, whose length is counted as the trainer counts it (`harness.train.total_steps`) from the train-set size:
the documented size of the dataset a placeholder root names (harness.estimate.DOCUMENTED_TRAIN_SIZES, the one
table of sizes, with its sources) or the length of a dataset that is built here. The Gumbel estimator's
temperature and KL weight are annealed over training progress, not steps, so they always end within the run.
"""
from __future__ import annotations

import pytest

from harness import estimate
from harness.config import parse_time
from harness.suite import SUITES_DIR, load_suite

PAPER_SUITES = sorted(p.stem for p in SUITES_DIR.glob("*.yaml") if "\n  paper:" in p.read_text())
TABLE_SUITES = [name for name in PAPER_SUITES if name.startswith("table")]


def test_the_suites_with_a_paper_profile_are_found():
    assert {"table1_vqvae", "table2_vqgan", "table3_ldm", "table4_vit_vqgan", "table5_video"} <= set(TABLE_SUITES)
    assert {"appendix_a7", "appendix_a9"} <= set(PAPER_SUITES)


def paper_suite(name: str):
    return load_suite(name, profile="paper", check_data=False)


def run_steps(config) -> int:
    """The run's length as the trainer counts it; a placeholder data.root must be named after a dataset whose
    train size is documented in harness.estimate.DOCUMENTED_TRAIN_SIZES."""
    steps, source = estimate.run_steps(config)
    assert steps is not None, source
    return steps


def scheduled_switches(config) -> dict[str, int]:
    """The steps at which something scheduled by step switches on or off, by name."""
    switches = {}
    if config.training.warmup_steps:
        switches["training.warmup_steps (end of warmup)"] = config.training.warmup_steps
    params = config.model.params
    if getattr(params, "disc_weight", 0) and getattr(params, "disc_start", 0):
        switches["model.disc_start (discriminator on)"] = params.disc_start
    return switches


def run_label(spec) -> str:
    return ",".join(f"{k}={v}" for k, v in spec.label.items())


@pytest.mark.parametrize("suite_name", PAPER_SUITES)
def test_every_scheduled_switch_happens_within_the_run(suite_name):
    suite = paper_suite(suite_name)
    late = []
    for spec in suite.runs:
        steps = run_steps(spec.config)
        for what, step in scheduled_switches(spec.config).items():
            if step >= steps:
                late.append(f"{run_label(spec)}: {what} at step {step:,} but the run has {steps:,} steps")
    assert not late, "\n".join(late)


def test_the_faces_run_of_table2_trains_its_discriminator_for_most_of_the_run():
    suite = paper_suite("table2_vqgan")
    faces = [spec for spec in suite.runs if spec.config.data.params.root.endswith("ffhq_celebahq")]
    assert faces
    for spec in faces:
        steps = run_steps(spec.config)
        assert spec.config.model.params.disc_start < steps / 2, (run_label(spec), steps)


#: The suites whose paper profile trains on a dataset (the synthetic problems run in seconds on any CPU).
DATA_SUITES = [name for name in PAPER_SUITES
               if any(spec.config.data is not None for spec in load_suite(name, profile="paper", check_data=False).runs)]


def test_every_table_suite_is_submittable():
    assert set(TABLE_SUITES) <= set(DATA_SUITES) and {"appendix_a9", "quickstart"} <= set(DATA_SUITES)


@pytest.mark.parametrize("suite_name", DATA_SUITES)
def test_the_paper_profile_can_be_submitted_as_it_is(suite_name):
    suite = paper_suite(suite_name)
    slurm = suite.slurm
    limit_min = slurm.time_limit_min()
    assert slurm.gpus_per_node and slurm.gpus_per_node >= 1
    assert slurm.mem_gb and slurm.mem_gb >= 32
    assert slurm.time is not None and parse_time(slurm.time) >= 4 * 60  # multi-hour, given as a quoted time
    assert slurm.max_requeues >= 2
    for spec in suite.runs:
        training = spec.config.training
        assert training.device == "cuda", run_label(spec)  # a job on a node without a GPU fails at once
        assert training.precision == "bf16", run_label(spec)
        assert training.checkpoint_every_min is not None and training.checkpoint_every_min < limit_min / 4
        assert slurm.cpus_per_task and slurm.cpus_per_task > training.num_workers, run_label(spec)


@pytest.mark.parametrize("suite_name", DATA_SUITES)
def test_the_gpu_request_belongs_to_the_paper_profile_alone(suite_name):
    """A profile's `slurm:` replaces the suite's: the cpu profile asks SLURM for no GPU, and `--set slurm.*`
    still applies on top of the profile's section."""
    cpu = load_suite(SUITES_DIR / f"{suite_name}.yaml", profile="cpu", check_data=False)
    assert not cpu.slurm.gpus_per_node
    paper = load_suite(SUITES_DIR / f"{suite_name}.yaml", profile="paper", check_data=False,
                       overrides=["slurm.mem_gb=128"])
    assert paper.slurm.gpus_per_node >= 1 and paper.slurm.mem_gb == 128
