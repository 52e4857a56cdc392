"""Runs in this process (harness/runner.py, train.py, store.py, report.py): one short run per estimator,
statuses (finished / diverged / error), retry, skip and --force, load_results and make-report, damaged
records and planted checkpoints."""
from __future__ import annotations

import logging
import math
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import estimators
from harness import runner, store
from harness.cli import make_report_main, run_suite_main
from harness.executors import run_local
from harness.runner import execute_run
from harness.suite import load_suite
from harness.train import Trainer, training_metric_window
from helpers_harness import (assert_same_metrics, no_report, one_torch_thread, read_history,  # noqa: F401
                             read_record, records_by_id, tiny_raw, write_suite, write_yaml)

STEPS = 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- one short run per estimator ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def estimator_runs(tmp_path_factory):
    """Every registered estimator, 4 steps of the tiny VQ-VAE, run one after another by run_local."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("estimators")
    # a codebook learned by the loss: every estimator accepts it (sync and ibq refuse an EMA codebook)
    path = write_suite(directory, name="harness_test_estimators", grid={"estimator.name": estimators.names()},
                       base={"model": {"codebook_learning": "loss"}})
    suite = load_suite(path)
    out = directory / "results"
    try:
        records = run_local(suite.runs, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    by_name = {spec.config.resolved["estimator"]["name"]: (spec, store.run_dir(out, suite.name, spec.run_id))
               for spec in suite.runs}
    return {"suite": suite, "path": path, "out": out, "records": records, "runs": by_name}


def test_run_local_returns_one_record_per_run(estimator_runs):
    records = estimator_runs["records"]
    assert len(records) == len(estimators.names())
    assert [r["run_id"] for r in records] == [s.run_id for s in estimator_runs["suite"].runs]


@pytest.mark.parametrize("name", estimators.names())
def test_estimator_run_finishes_with_sane_metrics(estimator_runs, name):
    spec, directory = estimator_runs["runs"][name]
    record = read_record(directory)
    assert record["status"] == "finished", record.get("traceback", "")[-3000:]
    assert record["run_id"] == spec.run_id and record["suite"] == "harness_test_estimators"
    assert record["config"] == spec.config.resolved
    assert record["label"] == {"estimator.name": name, "seed": 0}
    assert record["attempts"] == 1 and record["resumed"] is False
    assert record["step"] == STEPS
    assert "git_commit" in record["provenance"] and record["provenance"]["torch"]
    assert record["started"] and record["finished"]

    metrics = record["metrics"]
    assert metrics["steps"] == STEPS
    for key in ("train_loss", "train_rec_loss", "val_rec_loss", "val_quant_error", "wall_time_s"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0, key
    assert metrics["wall_time_s"] > 0
    for key in ("val_usage", "val_usage_batch", "train_usage_batch", "val_dead_codes"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["val_usage"] + metrics["val_dead_codes"] == pytest.approx(1.0)
    assert metrics["val_usage"] >= 1 / 16  # at least one of the 16 codes is used
    assert 1.0 <= metrics["val_perplexity"] <= 16.0 + 1e-6
    # PSNR for images in [-1, 1]: finite, and by Jensen at least the PSNR of the mean MSE (equal-size batches)
    assert math.isfinite(metrics["val_psnr"]) and 0.0 < metrics["val_psnr"] < 100.0
    assert metrics["val_psnr"] >= 10 * math.log10(4.0 / metrics["val_rec_loss"]) - 1e-4

    diagnostics = ("grad_cosine_exact", "obtuse_fraction", "push_pull")
    if estimators.get(name).chooses_codes:  # no gradient at a fixed evaluation-mode code to compare
        assert not any(key in metrics for key in diagnostics)
    else:
        assert 0.0 <= metrics["obtuse_fraction"] <= 1.0
        assert -1.0 - 1e-6 <= metrics["grad_cosine_exact"] <= 1.0 + 1e-6
        assert math.isfinite(metrics["push_pull"])
    if name == "exact":
        assert metrics["grad_cosine_exact"] == pytest.approx(1.0, abs=1e-4)

    history = read_history(directory)
    train = [row for row in history if row["kind"] == "train"]
    evals = [row for row in history if row["kind"] == "eval"]
    assert [int(row["step"]) for row in train] == list(range(STEPS))  # log_every 1
    assert all(math.isfinite(float(row["loss"])) for row in train)
    assert [int(row["step"]) for row in evals] == [STEPS]
    assert float(evals[0]["val_rec_loss"]) == pytest.approx(metrics["val_rec_loss"])
    # training metrics are end-of-training values: the last 10% of 4 steps is the last step alone
    assert metrics["train_rec_loss"] == pytest.approx(float(train[-1]["rec_loss"]))
    assert estimator_runs["records"][0]["notes"]["train_window"] == [STEPS - 1, STEPS - 1]
    assert (directory / "checkpoint.pt").exists()
    umask = os.umask(0)
    os.umask(umask)
    for name in ("record.json", "history.csv", "checkpoint.pt"):  # the user's umask, not mkstemp's 0600
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.parametrize("steps, window, first", [(400, None, 360), (401, None, 360), (4, None, 3), (1, None, 0),
                                                 (400, 50, 350), (400, 1, 399), (30, 500, 0)])
def test_training_metric_window(steps, window, first):
    assert training_metric_window(steps, window) == first


def test_training_metrics_average_the_window_only(tmp_path):
    suite = write_suite(tmp_path, base={"training": {"steps": 12, "log_every": 2, "usage_window": 5}})
    config = load_suite(suite).runs[0].config
    result = Trainer(config, tmp_path / "run", progress=False).run()
    train = [row for row in read_history(tmp_path / "run") if row["kind"] == "train"]
    window = [float(row["rec_loss"]) for row in train if int(row["step"]) >= 7]
    assert [int(row["step"]) for row in train if int(row["step"]) >= 7] == [8, 10, 11]
    assert result.metrics["train_rec_loss"] == pytest.approx(np.mean(window))
    assert result.notes["train_window"] == [7, 11]


@pytest.mark.filterwarnings("error::UserWarning")
def test_gan_run_before_its_discriminator_starts_warns_nothing(tmp_path):
    """The discriminator's optimiser does not step before disc_start while its schedule follows the global
    step; PyTorch's warning about that order is expected and must not reach the user on every VQGAN run."""
    suite = write_suite(tmp_path, base={
        "model": {"family": "vqgan", "channel_mult": [1, 2], "disc_channels": 8, "disc_layers": 2,
                  "disc_start": 2, "perceptual_weight": 0.0},
        "metrics": {"diagnostics": False}, "training": {"steps": 3}})
    config = load_suite(suite).runs[0].config
    assert Trainer(config, tmp_path / "run", progress=False).run() is not None


def test_load_results(estimator_runs):
    df = store.load_results(estimator_runs["out"])
    assert len(df) == len(estimators.names())
    for column in ("config.estimator.name", "status", "val_rec_loss", "run_id", "label.estimator.name",
                   "config.training.steps", "config.model.num_codes"):
        assert column in df.columns, column
    assert sorted(df["config.estimator.name"]) == estimators.names()
    assert set(df["config.model.num_codes"]) == {16}
    for _, row in df.iterrows():
        record = read_record(estimator_runs["runs"][row["config.estimator.name"]][1])
        assert row["status"] == record["status"]
        if record["status"] == "finished":
            assert row["val_rec_loss"] == pytest.approx(record["metrics"]["val_rec_loss"])


def test_load_results_is_exported_from_harness(estimator_runs):
    """README: `harness.load_results(DIR)` returns a pandas DataFrame with one row per run."""
    import harness

    assert len(harness.load_results(estimator_runs["out"])) == len(estimators.names())


def test_make_report_regenerates_without_training(estimator_runs, monkeypatch, capsys):
    out = estimator_runs["out"]
    suite_dir = out / "harness_test_estimators"
    records = sorted(suite_dir.glob("runs/*/record.json")) + sorted(suite_dir.glob("runs/*/checkpoint.pt"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in records}

    def no_training(*args, **kwargs):
        raise AssertionError("make-report must not train")

    monkeypatch.setattr(runner, "train_run", no_training)
    assert make_report_main([str(estimator_runs["path"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== harness_test_estimators" in printed
    for path, (mtime, payload) in before.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == payload, path
    results = pd.read_csv(suite_dir / "results.csv")
    assert len(results) == len(estimators.names()) and sorted(results["config.estimator.name"]) == estimators.names()
    table = (suite_dir / "table.tex").read_text()
    assert r"\toprule" in table and r"\bottomrule" in table
    finished = [n for n, (_, d) in estimator_runs["runs"].items() if read_record(d)["status"] == "finished"]
    assert finished
    for name in finished:  # a whole word: `rotation` must not match inside `rotation\_gamma`
        assert re.search(r"(?<![\w\\])" + re.escape(name.replace("_", r"\_")) + r"(?![\w\\])", table), name


def test_make_report_finds_suites_under_out(estimator_runs, capsys):
    """Without suite names, make-report reports every suite that has records under --out."""
    table = estimator_runs["out"] / "harness_test_estimators" / "table.tex"
    table.unlink(missing_ok=True)
    assert make_report_main(["--out", str(estimator_runs["out"])]) == 0
    captured = capsys.readouterr()
    assert "== harness_test_estimators" in captured.out, captured.err
    assert table.exists()


def test_make_report_without_results(tmp_path, capsys):
    assert make_report_main(["nothing_here", "--out", str(tmp_path)]) == 1
    assert "no results for 'nothing_here'" in capsys.readouterr().err


# -- statuses: diverged, error, the suite goes on, retry -------------------------------------------------------

def _png_folder(root, count=16, side=20):
    rng = np.random.default_rng(0)
    (root / "class_a").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "class_a" / f"{i}.png")


def test_statuses_and_retry(tmp_path, capsys, no_report):
    """error, diverged and finished in one suite; a rerun retries the error run only (RunStatus.is_result)."""
    images = tmp_path / "images"  # one image only: the suite loads, the first run fails with an exception
    _png_folder(images, count=1)
    present = tmp_path / "present"
    _png_folder(present)
    raw = tiny_raw("statuses", zip=[{"data.root": [str(images), str(present), str(present)],
                                     "training.lr": [1e-3, 1e30, 1e-3]}])
    raw["base"]["data"] = {"name": "image_folder", "root": str(present), "size": 16, "val_fraction": 0.5}
    path = write_yaml(tmp_path / "statuses.yaml", raw)
    suite = load_suite(path)
    error_spec, diverged_spec, ok_spec = suite.runs
    out = tmp_path / "results"

    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "2 of 3 runs did not finish (diverged, error)" in err

    records = records_by_id(out, "statuses")
    error = records[error_spec.run_id]
    assert error["status"] == "error" and error["attempts"] == 1
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "ValueError" in error["traceback"] and "at least 2" in error["traceback"]
    assert "metrics" not in error

    diverged = records[diverged_spec.run_id]
    assert diverged["status"] == "diverged"
    assert diverged["diverged_at"] == 1 and diverged["step"] == 1  # step 0 is finite; lr 1e30 blows up step 1
    assert diverged["metrics"] == {"steps": 1}

    finished = records[ok_spec.run_id]  # the run after the two failures still ran
    assert finished["status"] == "finished" and finished["step"] == STEPS
    assert math.isfinite(finished["metrics"]["val_rec_loss"])
    finished_text = (out / "statuses" / "runs" / ok_spec.run_id / "record.json").read_text()
    diverged_text = (out / "statuses" / "runs" / diverged_spec.run_id / "record.json").read_text()

    # re-running retries the error run (the folder holds enough images now; it failed before any
    # checkpoint, so from scratch) and keeps the results: the finished run and the diverged one (the same seed diverges again)
    _png_folder(images)
    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 1
    assert "1 of 3 runs did not finish (diverged)" in capsys.readouterr().err
    records = records_by_id(out, "statuses")
    retried = records[error_spec.run_id]
    assert retried["status"] == "finished" and retried["attempts"] == 2 and retried["resumed"] is False
    assert "traceback" not in retried
    assert math.isfinite(retried["metrics"]["val_rec_loss"])
    assert (out / "statuses" / "runs" / diverged_spec.run_id / "record.json").read_text() == diverged_text
    assert (out / "statuses" / "runs" / ok_spec.run_id / "record.json").read_text() == finished_text

    # --force reruns the diverged run, from scratch, and it diverges at the same step again
    again = execute_run(diverged_spec, out, force=True, progress=False)
    assert again["status"] == "diverged" and again["attempts"] == 2 and again["diverged_at"] == 1
    assert again["resumed"] is False and again["metrics"] == {"steps": 1}


def test_exception_in_train_run_is_recorded(tmp_path, monkeypatch):
    suite = load_suite(write_suite(tmp_path, name="boom", grid={"estimator.name": ["ste", "rotation"]}))
    calls = []

    def flaky(config, directory, **kwargs):
        calls.append(config.estimator.name)
        if config.estimator.name == "ste":
            raise RuntimeError("boom: simulated failure")
        return real(config, directory, **kwargs)

    real = runner.train_run
    monkeypatch.setattr(runner, "train_run", flaky)
    records = run_local(suite.runs, tmp_path / "out", progress=False)
    assert calls == ["ste", "rotation"]
    assert [r["status"] for r in records] == ["error", "finished"]
    assert "RuntimeError: boom: simulated failure" in records[0]["traceback"]
    on_disk = read_record(store.run_dir(tmp_path / "out", "boom", suite.runs[0].run_id))
    assert on_disk["status"] == "error" and "boom: simulated failure" in on_disk["traceback"]


# -- skip and --force -------------------------------------------------------------------------------------

def test_skip_finished_and_force(tmp_path, capsys, no_report):
    path = write_suite(tmp_path, name="skipforce", grid={"estimator.name": ["rotation"]})
    out = tmp_path / "results"
    (spec,) = load_suite(path).runs
    record_path = store.run_dir(out, "skipforce", spec.run_id) / "record.json"

    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 0
    first = read_record(record_path.parent)
    assert first["status"] == "finished" and first["attempts"] == 1
    text, mtime = record_path.read_text(), record_path.stat().st_mtime_ns

    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 0
    assert record_path.read_text() == text and record_path.stat().st_mtime_ns == mtime
    assert read_record(record_path.parent)["attempts"] == 1
    capsys.readouterr()

    assert run_suite_main([str(path), "--dry-run", "--out", str(out)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(spec.run_id))
    assert row.split()[-1] == "finished"

    assert run_suite_main([str(path), "--out", str(out), "--no-progress", "--force"]) == 0
    forced = read_record(record_path.parent)
    assert forced["status"] == "finished" and forced["attempts"] == 2
    assert forced["resumed"] is False  # --force starts from scratch, not from the final checkpoint
    assert forced["started"] >= first["started"]
    assert_same_metrics(forced["metrics"], first["metrics"])  # a run is deterministic on the CPU


def test_execute_run_returns_previous_record_when_finished(tmp_path, monkeypatch):
    (spec,) = load_suite(write_suite(tmp_path, name="again", grid={"estimator.name": ["ste"]})).runs
    first = execute_run(spec, tmp_path / "out", progress=False)
    monkeypatch.setattr(runner, "train_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert execute_run(spec, tmp_path / "out", progress=False) == first


def test_execute_run_skips_a_locked_run(tmp_path, monkeypatch):
    (spec,) = load_suite(write_suite(tmp_path, name="locked", grid={"estimator.name": ["ste"]})).runs
    directory = store.run_dir(tmp_path / "out", "locked", spec.run_id)
    monkeypatch.setattr(runner, "train_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    # another process holds the run folder's lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; directory = sys.argv[1]; import os; os.makedirs(directory, exist_ok=True); "
        "h = open(os.path.join(directory, '.lock'), 'a+'); fcntl.flock(h.fileno(), fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert execute_run(spec, tmp_path / "out", progress=False) is None
        assert not (directory / "record.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_grid_over_list_values_reports(tmp_path):
    """A grid over a list-valued key (model.channel_mult) runs and reports; the report must not crash after
    training on the unhashable label values."""
    raw = tiny_raw("lists", grid={"model.channel_mult": [[1, 2], [1, 2, 2]]})
    path = write_yaml(tmp_path / "lists.yaml", raw)
    suite = load_suite(path)
    assert [s.label["model.channel_mult"] for s in suite.runs] == [[1, 2], [1, 2, 2]]
    out = tmp_path / "results"
    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 0
    assert all(r["status"] == "finished" for r in records_by_id(out, "lists").values())
    table = (out / "lists" / "table.tex").read_text()
    assert "[1, 2, 2]" in table and "[1, 2]" in table


# -- damaged records, planted checkpoints --------------------------------------------------------------------

def test_damaged_record_is_skipped_then_rerun(tmp_path, monkeypatch, capsys, caplog):
    """A truncated record.json: load_results, --dry-run and make-report skip it with a warning naming the
    file; run-suite keeps it as record.json.damaged and reruns that run, resumed from its checkpoint (of the
    last step: only the final evaluation runs again), and leaves the other run alone."""
    from harness import report

    path = write_suite(tmp_path, name="damaged", grid={"estimator.name": ["ste", "rotation"]})
    damaged_spec, other_spec = load_suite(path).runs
    out = tmp_path / "results"
    skip_report = lambda *args, **kwargs: {"summary": "(report skipped by the test)", "files": []}  # noqa: E731
    with monkeypatch.context() as patch:
        patch.setattr(report, "write_suite_report", skip_report)
        assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 0
    damaged_dir = store.run_dir(out, "damaged", damaged_spec.run_id)
    other_record = store.run_dir(out, "damaged", other_spec.run_id) / "record.json"
    first = read_record(damaged_dir)
    other_text = other_record.read_text()
    truncated = (damaged_dir / "record.json").read_bytes()[:57]
    (damaged_dir / "record.json").write_bytes(truncated)
    named = str(damaged_dir / "record.json")

    caplog.set_level(logging.WARNING)
    df = store.load_results(out)
    assert list(df["run_id"]) == [other_spec.run_id] and named in caplog.text
    caplog.clear()
    capsys.readouterr()
    assert run_suite_main([str(path), "--dry-run", "--out", str(out)]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith((damaged_spec.run_id, other_spec.run_id))}
    assert rows == {damaged_spec.run_id: "damaged", other_spec.run_id: "finished"} and named in caplog.text
    caplog.clear()
    assert make_report_main([str(path), "--out", str(out)]) == 0
    assert named in caplog.text and (out / "damaged" / "results.csv").exists()
    assert (damaged_dir / "record.json").read_bytes() == truncated  # readers leave it as it is

    trained = []
    step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, index, batch: trained.append(index) or step(self, index, batch))
    monkeypatch.setattr(report, "write_suite_report", skip_report)
    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 0
    assert (damaged_dir / "record.json.damaged").read_bytes() == truncated
    rerun = read_record(damaged_dir)
    assert rerun["status"] == "finished" and rerun["resumed"] is True and trained == []
    assert rerun["damaged_record"] == "record.json.damaged" and rerun["attempts"] == 1
    assert_same_metrics(rerun["metrics"], first["metrics"])
    assert other_record.read_text() == other_text


class _Payload:
    """Unpickling this runs os.mkdir(target), as a planted checkpoint could run anything."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_planted_checkpoint_is_refused_and_recorded_as_error(tmp_path):
    import torch

    from harness.checkpoint import KEYS

    (spec,) = load_suite(write_suite(tmp_path, name="planted", grid={"estimator.name": ["ste"]})).runs
    directory = store.run_dir(tmp_path / "out", "planted", spec.run_id)
    directory.mkdir(parents=True)
    target = tmp_path / "payload-ran"
    torch.save({**{key: {} for key in KEYS}, "history": [_Payload(target)]}, directory / "checkpoint.pt")

    record = execute_run(spec, tmp_path / "out", progress=False)
    assert record["status"] == "error" and not target.exists()
    assert str(directory / "checkpoint.pt") in record["traceback"] and "refused" in record["traceback"]
    assert "--force" in record["traceback"]
    assert (directory / "checkpoint.pt").exists()  # an error run keeps its checkpoint: the user decides

    forced = execute_run(spec, tmp_path / "out", progress=False, force=True)  # --force: from scratch
    assert forced["status"] == "finished" and forced["resumed"] is False and not target.exists()
