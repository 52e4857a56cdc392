"""harness/run_logging.py on tiny runs: TensorBoard events read back with tensorboard's EventAccumulator
(scalars at the history's steps, learning rate, code-count histograms and image grids at each evaluation),
runs trained with and without logging end with the same numbers, a resumed run drops the events after its
checkpoint, and Weights & Biases through a fake package (offline, grouped by suite, config and final
metrics) or a clear error without it."""
from __future__ import annotations

import math
import sys
import types

import pytest
from PIL import Image

from harness import run_logging, runner, store
from harness.config import ConfigError
from harness.suite import load_suite
from harness.train import lr_factor
from helpers_harness import read_history, write_suite

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

#: gumbel draws random numbers (the images must not shift them); evaluations at steps 3 and 6 (the end)
LOGGED = {"grid": {"estimator.name": ["gumbel"]},
          "base": {"training": {"steps": 6, "eval_every": 3, "warmup_steps": 2}, "metrics": {"diagnostics": False}}}


def _run(tmp_path, name: str, metrics: dict | None = None):
    raw = {**LOGGED, "base": {**LOGGED["base"], "metrics": {**LOGGED["base"]["metrics"], **(metrics or {})}}}
    suite = load_suite(write_suite(tmp_path, name, **raw))
    (spec,) = suite.runs
    record = runner.execute_run(spec, tmp_path / "out", progress=False)
    return spec, store.run_dir(tmp_path / "out", spec.suite, spec.run_id), record


def _events(run_dir):
    (directory,) = (run_dir / run_logging.TENSORBOARD_DIR).iterdir()
    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={"images": 0, "histograms": 0,
                                                                                     "scalars": 0})
    accumulator.Reload()
    return directory.name, accumulator


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("tensorboard"), "tb_on")


def test_tensorboard_scalars_are_the_history(logged):
    spec, run_dir, record = logged
    assert record["status"] == "finished"
    name, events = _events(run_dir)
    assert name == "estimator.name=gumbel,seed=0"  # the run's varying values
    history = read_history(run_dir)
    for kind in ("train", "eval"):
        rows = [r for r in history if r["kind"] == kind]
        assert rows
        for key in ("rec_loss", "usage_batch", "perplexity") if kind == "train" else ("val_rec_loss", "val_usage",
                                                                                      "val_perplexity"):
            logged_values = [(e.step, e.value) for e in events.Scalars(f"{kind}/{key}")]
            expected = [(int(r["step"]), float(r[key])) for r in rows]
            assert [s for s, _ in logged_values] == [s for s, _ in expected], key
            assert [v for _, v in logged_values] == pytest.approx([v for _, v in expected], rel=1e-6), key
    lr = spec.config.training.lr
    for event in events.Scalars("train/lr"):  # the rate the step's update used: warmup over 2 steps, cosine
        assert event.value == pytest.approx(lr * lr_factor(event.step, 2, 6, "cosine",
                                                           spec.config.training.min_lr_ratio), rel=1e-6)


def test_tensorboard_histograms_and_images_at_each_evaluation(logged):
    _, run_dir, _ = logged
    _, events = _events(run_dir)
    assert [e.step for e in events.Histograms("eval/code_counts")] == [3, 6]
    counts = events.Histograms("eval/code_counts")[-1].histogram_value
    assert counts.num == 16  # one count per code of the 16-code codebook
    assert counts.sum == pytest.approx(8 * 8 * 8)  # 8 images × an 8×8 latent grid (one downsampling)
    images = events.Images("eval/reconstructions")
    assert [e.step for e in images] == [3, 6]
    # 2 rows (originals, reconstructions) × 8 images of 16 px, 2 px padding
    assert (images[0].width, images[0].height) == (8 * 18 + 2, 2 * 18 + 2)
    with Image.open(run_dir / run_logging.RECONSTRUCTIONS) as picture:
        assert picture.size == (images[0].width, images[0].height)


def test_logging_changes_no_number(logged, tmp_path):
    _, _, with_logging = logged
    _, run_dir, without = _run(tmp_path, "tb_on", {"tensorboard": False})  # same suite name: another run id
    assert not (run_dir / run_logging.TENSORBOARD_DIR).exists()
    assert (run_dir / run_logging.RECONSTRUCTIONS).exists()  # the report's images do not need TensorBoard
    numbers = {k: v for k, v in with_logging["metrics"].items() if k != "wall_time_s"}
    assert numbers == {k: v for k, v in without["metrics"].items() if k != "wall_time_s"}


def test_without_the_tensorboard_package_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(run_logging, "summary_writer_class", lambda: None)
    _, run_dir, record = _run(tmp_path, "tb_absent")
    assert record["status"] == "finished" and not (run_dir / run_logging.TENSORBOARD_DIR).exists()


def test_a_resumed_run_drops_the_events_after_its_checkpoint(tmp_path, monkeypatch):
    raw = {**LOGGED, "base": {**LOGGED["base"], "training": {**LOGGED["base"]["training"], "checkpoint_every": 2}}}
    suite = load_suite(write_suite(tmp_path, "tb_resume", **raw))
    (spec,) = suite.runs
    calls = {"n": 0}

    def stop_after_five_steps():
        calls["n"] += 1
        return calls["n"] == 5

    run_dir = store.run_dir(tmp_path / "out", spec.suite, spec.run_id)
    first = runner.execute_run(spec, tmp_path / "out", progress=False, should_stop=stop_after_five_steps)
    assert first["status"] == "preempted" and first["step"] == 5
    second = runner.execute_run(spec, tmp_path / "out", progress=False)
    assert second["status"] == "finished"
    _, events = _events(run_dir)
    steps = [e.step for e in events.Scalars("train/rec_loss")]
    assert steps == [int(r["step"]) for r in read_history(run_dir) if r["kind"] == "train"] == list(range(6))


# -- Weights & Biases ------------------------------------------------------------------------------------

class FakeWandbRun:
    def __init__(self, **options):
        self.options, self.logged, self.summary, self.finished = options, [], {}, False

    def log(self, values, step):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**options):
        module.runs.append(FakeWandbRun(**options))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_wandb_run_per_harness_run(tmp_path, fake_wandb):
    spec, run_dir, record = _run(tmp_path, "wandb_suite", {"wandb": {"project": "rotation-trick"},
                                                           "tensorboard": False})
    assert record["status"] == "finished"
    (run,) = fake_wandb.runs
    assert run.options["project"] == "rotation-trick" and run.options["mode"] == "offline"  # offline by default
    assert run.options["group"] == "wandb_suite" and run.options["name"] == "estimator.name=gumbel,seed=0"
    assert run.options["config"] == spec.config.resolved and run.options["id"] == spec.run_id
    train_rows = [r for r in read_history(run_dir) if r["kind"] == "train"]
    logged_train = [(step, values) for step, values in run.logged if "train/rec_loss" in values]
    assert [s for s, _ in logged_train] == [int(r["step"]) for r in train_rows]
    assert all(math.isclose(v["train/rec_loss"], float(r["rec_loss"]), rel_tol=1e-6)
               for (_, v), r in zip(logged_train, train_rows))
    assert run.summary["val_rec_loss"] == record["metrics"]["val_rec_loss"] and run.finished


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    raw = {**LOGGED, "base": {**LOGGED["base"], "metrics": {"wandb": {"project": "p"}}}}
    with pytest.raises(ConfigError) as error:
        load_suite(write_suite(tmp_path, "wandb_missing", **raw))
    assert "metrics.wandb: the wandb package is not installed: pip install 'rotation-trick-harness[wandb]'" in str(error.value)


@pytest.mark.parametrize("settings, problem", [
    ({"project": "p", "mode": "cloud"}, "metrics.wandb.mode: 'cloud' is not one of offline, online"),
    ({"mode": "offline"}, "metrics.wandb.project: required"),
    ({"project": "p", "team": "x"}, "metrics.wandb.team: unknown key; valid keys: project, mode, entity"),
])
def test_wandb_settings_are_checked(tmp_path, fake_wandb, settings, problem):
    raw = {**LOGGED, "base": {**LOGGED["base"], "metrics": {"wandb": settings}}}
    with pytest.raises(ConfigError) as error:
        load_suite(write_suite(tmp_path, "wandb_bad", **raw))
    assert problem in str(error.value)


def test_reconstruction_grid_of_video_clips():
    import torch

    clips = torch.zeros(2, 3, 6, 8, 8)  # (B, C, T, H, W): the first clip's first frames
    grid = run_logging.image_grid(clips, torch.ones_like(clips))
    assert grid.shape == (3, 2 * 10 + 2, run_logging.FRAMES * 10 + 2)
    assert float(grid[:, 2:10, 2:10].max()) == 0.5 and float(grid[:, 12:20, 2:10].min()) == 1.0
