"""Resume and failures (harness/train.py's Trainer through harness/runner.execute_run): an `error` run
resumes from its checkpoint, a stop during the final evaluation resumes with that evaluation alone,
checkpoints by wall-clock interval, and a missing GPU fails before any work. A resumed run ends with the
same metrics as an uninterrupted one. The `cuda` tests run where a GPU is."""
from __future__ import annotations

import pytest
import torch

from harness import data as data_module
from harness import store
from harness.checkpoint import load_checkpoint
from harness.runner import execute_run
from harness.suite import load_suite
from harness.train import Trainer, train_run
from helpers_harness import assert_same_metrics, one_torch_thread, read_history, write_suite  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
ON_CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda])


def _spec(directory, name: str, estimator: str = "rotation", **training):
    """The one run of a tiny suite (tests/helpers_harness.TINY_BASE) with `training` overrides."""
    (spec,) = load_suite(write_suite(directory, name=name, grid={"estimator.name": [estimator]},
                                     base={"training": training})).runs
    return spec


@pytest.fixture
def deterministic_cuda(monkeypatch):
    """Deterministic CUDA kernels for runs compared for equality (cuDNN and scatter-adds use atomics)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
def test_error_run_resumes_from_its_checkpoint(tmp_path, device, request):
    """A run that dies after step 3 keeps its checkpoint of step 2; the next execute_run (what run-suite
    calls) resumes from there and ends with an uninterrupted run's metrics and history. The Gumbel
    estimator draws noise at every step, so this needs the random state restored as well."""
    if device == "cuda":
        request.getfixturevalue("deterministic_cuda")
    steps = 6
    spec = _spec(tmp_path, "crash", estimator="gumbel", steps=steps, checkpoint_every=2, device=device)
    out = tmp_path / "results"
    directory = store.run_dir(out, spec.suite, spec.run_id)
    polls = []

    def crash_after_step_3():
        polls.append(len(polls))
        if len(polls) == 3:
            raise RuntimeError("simulated crash after step 3")
        return False

    crashed = execute_run(spec, out, progress=False, should_stop=crash_after_step_3)
    assert crashed["status"] == "error" and "simulated crash after step 3" in crashed["traceback"]
    assert load_checkpoint(directory / store.CHECKPOINT)["step"] == 2  # steps 3 is lost, as with a kill

    resumed = execute_run(spec, out, progress=False)
    assert resumed["status"] == "finished" and resumed["step"] == steps
    assert resumed["resumed"] is True and resumed["attempts"] == 2 and "traceback" not in resumed

    reference = execute_run(spec, tmp_path / "uninterrupted", progress=False)
    assert reference["resumed"] is False
    assert_same_metrics(resumed["metrics"], reference["metrics"], rel=1e-6 if device == "cpu" else 1e-5)
    got = read_history(directory)
    expected = read_history(store.run_dir(tmp_path / "uninterrupted", spec.suite, spec.run_id))
    assert [(row["kind"], row["step"]) for row in got] == [(row["kind"], row["step"]) for row in expected]
    if device == "cpu":
        assert got == expected

    forced = execute_run(spec, out, progress=False, force=True)  # --force: from scratch
    assert forced["resumed"] is False and forced["attempts"] == 3


@pytest.mark.parametrize("when", ["after step 2", "during the final evaluation"])
def test_preempted_run_resumes_where_it_stopped(tmp_path, monkeypatch, when):
    """A stop requested at a step boundary ends the run as `preempted`, checkpointed there. The last step's
    checkpoint is written before the final evaluation, so a stop requested during it ends the run before
    the diagnostics and the resumed run trains no step at all. Either way it ends as an uninterrupted run."""
    steps = 4
    spec = _spec(tmp_path, "preempt", steps=steps)
    reference = execute_run(spec, tmp_path / "uninterrupted", progress=False)
    assert reference["status"] == "finished" and "grad_cosine_exact" in reference["metrics"]

    stop = {"requested": False}
    evaluate, step = Trainer.evaluate, Trainer.step

    def evaluate_then_request_stop(self, index):
        result = evaluate(self, index)
        stop["requested"] = index == self.steps
        return result

    def step_then_request_stop(self, index, batch):
        stop["requested"] = index == 1
        return step(self, index, batch)

    out = tmp_path / "results"
    directory = store.run_dir(out, spec.suite, spec.run_id)
    stopped_at = steps if when == "during the final evaluation" else 2
    with monkeypatch.context() as patch:
        if stopped_at == steps:
            patch.setattr(Trainer, "evaluate", evaluate_then_request_stop)
        else:
            patch.setattr(Trainer, "step", step_then_request_stop)
        stopped = execute_run(spec, out, progress=False, should_stop=lambda: stop["requested"])
    assert stopped["status"] == "preempted" and stopped["step"] == stopped_at
    assert stopped["metrics"] == {"steps": stopped_at}
    assert load_checkpoint(directory / store.CHECKPOINT)["step"] == stopped_at
    assert [row["kind"] for row in read_history(directory)] == ["train"] * stopped_at  # no evaluation kept

    trained = []

    def record_step(self, index, batch):
        trained.append(index)
        return step(self, index, batch)

    monkeypatch.setattr(Trainer, "step", record_step)
    resumed = execute_run(spec, out, progress=False)
    assert resumed["status"] == "finished" and resumed["resumed"] is True and resumed["attempts"] == 2
    assert trained == list(range(stopped_at, steps))
    assert_same_metrics(resumed["metrics"], reference["metrics"])
    assert read_history(directory) == read_history(store.run_dir(tmp_path / "uninterrupted", spec.suite,
                                                                  spec.run_id))


@pytest.mark.parametrize("minutes, saved", [(None, [8]), (1.0, [3, 6, 8]), (0.5, [2, 4, 6, 8])])
def test_checkpoints_by_wall_clock_interval(tmp_path, monkeypatch, minutes, saved):
    """With `training.checkpoint_every_min`, a checkpoint is also written once that many minutes passed
    since the last one (each step takes 25 s on the patched clock; checkpoint_every is 100 steps), so a
    requeued job loses at most that interval. The last step's checkpoint comes before the evaluation."""
    spec = _spec(tmp_path, "clock", steps=8, checkpoint_every=100, checkpoint_every_min=minutes)
    now = {"s": 0.0}
    step, checkpoint = Trainer.step, Trainer.checkpoint
    written = []

    def step_of_25_s(self, index, batch):
        now["s"] += 25.0
        return step(self, index, batch)

    def record_checkpoint(self, index):
        written.append(index)
        checkpoint(self, index)

    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: now["s"]))
    monkeypatch.setattr(Trainer, "step", step_of_25_s)
    monkeypatch.setattr(Trainer, "checkpoint", record_checkpoint)
    result = train_run(spec.config, tmp_path / "run", progress=False)
    assert result.status == "finished" and written == saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests a machine without a CUDA GPU")
def test_cuda_device_without_a_gpu_fails_before_any_work(tmp_path, monkeypatch):
    spec = _spec(tmp_path, "no_gpu", device="cuda")

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was built")

    monkeypatch.setattr(data_module, "build_dataset", no_data)
    record = execute_run(spec, tmp_path / "results", progress=False)
    assert record["status"] == "error"
    assert "training.device is 'cuda' but this machine has no CUDA device" in record["traceback"]
    assert "--set training.device=auto" in record["traceback"]
    assert "the data set was built" not in record["traceback"]
    assert not (store.run_dir(tmp_path / "results", spec.suite, spec.run_id) / store.CHECKPOINT).exists()


@pytest.mark.cuda
@needs_cuda
def test_cuda_device_index_beyond_the_machine(tmp_path):
    from harness.train import resolve_device

    count = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(RuntimeError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")
