"""Unit tests of the SLURM executor (harness/slurm/) without a cluster: validation of the `slurm:` section,
the sbatch script submitit writes (under its own mocked sbatch), the SLURM state → run status mapping,
collection of ended jobs from mocked sacct output, the max_requeues bound, and the checkpoint/requeue logic
of SlurmRun with a stand-in for the runner."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

import cloudpickle
import submitit

from harness import store
from harness import slurm as hs
from harness.config import DEFAULT_TIMEOUT_MIN, ConfigError, SlurmConfig, parse_time
from harness.slurm import collect, files, settings, states
from harness.status import RunStatus
from harness.suite import SuiteError, load_suite

try:  # submitit's own mocked sbatch/sacct (its test utilities ship with the package)
    from submitit.slurm.test_slurm import mocked_slurm as _submitit_mocked_slurm
except ImportError:  # pragma: no cover - a submitit without its tests
    _submitit_mocked_slurm = None


def mocked_slurm():
    """submitit's mocked SLURM: sbatch returns job 12, 13, ...; sacct answers from `mock.job_sacct`."""
    if _submitit_mocked_slurm is None:
        pytest.skip("this submitit has no submitit.slurm.test_slurm.mocked_slurm")
    return _submitit_mocked_slurm()

TINY_BASE = {
    "model": {"family": "vqvae", "preset": "cpu", "resolution": 16, "channels": 8, "channel_mult": [1, 2],
              "num_codes": 16, "latent_dim": 4},
    "estimator": {"name": "rotation"},
    "data": {"name": "natural_patches", "size": 16, "train_patches": 256, "val_patches": 64},
    "training": {"steps": 10, "batch_size": 8, "eval_batches": 2, "progress_bar": False},
    "metrics": {"diagnostics_batch": 4},
}


@pytest.fixture(autouse=True)
def _no_real_squeue(monkeypatch):
    """Hermetic: the mocked jobs are never in a real queue (None would mean "squeue failed")."""
    monkeypatch.setattr(collect, "queued_job_ids", lambda: set())


def write_suite(tmp_path: Path, slurm=None, seeds=(0, 1, 2), name="slurm_unit", text: str | None = None) -> Path:
    path = tmp_path / f"{name}.yaml"
    if text is not None:
        path.write_text(text)
        return path
    raw = {"name": name, "seeds": list(seeds), "base": TINY_BASE}
    if slurm is not None:
        raw["slurm"] = slurm
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_record(out: Path, spec, status: str, **fields) -> None:
    directory = store.run_dir(out, spec.suite, spec.run_id)
    store.write_json(directory / store.RECORD, {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label,
                                                 "config": spec.config.resolved, "status": status, **fields})


def write_result(job, outcome: tuple) -> None:
    """The result pickle a submitit job leaves: ("success", value) or ("error", traceback text)."""
    job.paths.result_pickle.parent.mkdir(parents=True, exist_ok=True)
    job.paths.result_pickle.write_bytes(cloudpickle.dumps(outcome))


def status_of(out: Path, spec) -> dict:
    return store.read_record(store.run_dir(out, spec.suite, spec.run_id))


# -- validation (harness.config.SlurmConfig, which load_suite applies) ---------------------------------------

def slurm_problems(section, source: str) -> list[str]:
    """Every problem of a ``slurm:`` section, one line each: ``<source>: slurm.<key>: <message>``."""
    try:
        SlurmConfig.from_section(section, where=source)
    except ConfigError as error:
        return error.problems
    return []


def test_unknown_key_names_the_closest_and_lists_valid_keys():
    problems = slurm_problems({"partiton": "gpu"}, "suites/x.yaml")
    assert len(problems) == 1
    line = problems[0]
    assert line.startswith("suites/x.yaml: slurm.partiton: unknown key 'partiton'.")
    assert "Did you mean 'partition'?" in line
    assert "Valid keys:" in line and "array_parallelism" in line and "cpus_per_task" in line


def test_int_time_is_rejected_with_the_quoting_hint(tmp_path):
    # PyYAML reads an unquoted 10:30 as the base-60 integer 630
    path = write_suite(tmp_path, text="name: t\nbase: {}\nslurm:\n  time: 10:30\n")
    assert yaml.safe_load(path.read_text())["slurm"]["time"] == 630
    problems = slurm_problems({"time": 630}, str(path))
    assert len(problems) == 1
    assert f"{path}: slurm.time:" in problems[0]
    assert 'time: "10:30"' in problems[0] and "630" in problems[0] and "timeout_min" in problems[0]


def test_int_time_from_a_suite_file_and_from_set_is_refused_before_submission(tmp_path):
    path = write_suite(tmp_path, slurm={"partition": "debug"})
    text = path.read_text() + "  time: 10:30\n"
    path.write_text(text)
    with pytest.raises(SuiteError, match=r'slurm\.time: got the integer 630.*time: "10:30"'):
        load_suite(path)
    with pytest.raises(SuiteError, match="quoted"):
        load_suite(write_suite(tmp_path, name="other"), overrides=["slurm.time=10:30"])
    quoted = load_suite(write_suite(tmp_path, name="third"), overrides=['slurm.time="10:30"'])
    assert hs.slurm_settings(quoted).parameters["timeout_min"] == 11  # 10 min 30 s, rounded up


@pytest.mark.parametrize("cfg, key, fragment", [
    ({"cpus_per_task": "4"}, "cpus_per_task", "expected an integer or null, got '4' (str)"),
    ({"cpus_per_task": 0}, "cpus_per_task", "must be at least 1, got 0"),
    ({"gpus_per_node": 1.5}, "gpus_per_node", "expected an integer"),
    ({"mem_gb": "16G"}, "mem_gb", "expected a number"),
    ({"mem_gb": -1}, "mem_gb", "positive"),
    ({"setup": "module load cuda"}, "setup", "expected a list of shell lines"),
    ({"setup": ["ok", 3]}, "setup", "expected a list of shell lines"),
    ({"use_srun": "yes"}, "use_srun", "expected true or false"),
    ({"additional": ["mail-type=END"]}, "additional", "expected a mapping"),
    ({"additional": {"mail-type": ["END"]}}, "additional.mail-type", "expected a string, number or true"),
    ({"additional": {"--exclusive": True}}, "additional.--exclusive", "without dashes"),
    ({"time": "ten minutes"}, "time", "is not a SLURM time"),
    ({"time": 1.5}, "time", "quoted time string"),
    ({"time": "00:00:00"}, "time", "zero"),
    ({"time": "1:00:00", "timeout_min": 60}, "time", "either time or timeout_min"),
    ({"timeout_min": "60"}, "timeout_min", "expected an integer"),
    ({"array_parallelism": 0}, "array_parallelism", "at least 1"),
    ({"partition": ""}, "partition", "non-empty string"),
    ({"account": 7}, "account", "non-empty string"),
    ({"wait_timeout_min": 0}, "wait_timeout_min", "positive"),
])
def test_wrong_types_are_named_with_key_path_and_file(cfg, key, fragment):
    problems = slurm_problems(cfg, "my_suite.yaml")
    assert any(line.startswith(f"my_suite.yaml: slurm.{key}: ") and fragment in line for line in problems), problems


def test_every_problem_is_reported_at_once_and_good_config_passes():
    problems = slurm_problems({"partiton": "x", "cpus_per_task": "2", "time": 90}, "s.yaml")
    assert len(problems) == 3
    good = {"partition": "gpu", "account": "lab", "qos": "high", "gpus_per_node": 1, "cpus_per_task": 8,
            "mem_gb": 32, "time": "1-00:00:00", "constraint": "a100", "setup": ["module load cuda"],
            "array_parallelism": 4, "max_requeues": 5, "additional": {"mail-type": "END", "exclusive": True},
            "use_srun": False, "signal_delay_s": 120, "job_name": "rt", "wait_timeout_min": 10,
            "poll_interval_s": 2.5}
    assert slurm_problems(good, "s.yaml") == []
    assert slurm_problems({"timeout_min": 90}, "s.yaml") == []
    assert slurm_problems(None, "s.yaml") == []
    assert slurm_problems("gpu", "s.yaml")[0].startswith("s.yaml: slurm: expected a mapping")


@pytest.mark.parametrize("text, minutes", [
    ("10:30", 11), ("90", 90), ("01:00:00", 60), ("1-00:00:00", 1440), ("2-03", 3060), ("1-01:30", 1530),
    ("00:00:59", 1), ("24:00:00", 1440),
])
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


# -- the sbatch script --------------------------------------------------------------------------------------

FULL_SLURM = {
    "partition": "gpu", "account": "lab", "qos": "high", "gpus_per_node": 2, "cpus_per_task": 8, "mem_gb": 64,
    "time": "1-02:03:04", "constraint": "a100", "setup": ["module load cuda/12.1", "source ~/venv/bin/activate"],
    "additional": {"mail-type": "END", "exclusive": True}, "array_parallelism": 2, "max_requeues": 5,
}


def _sbatch_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("#SBATCH")]


def _submitted_script(out: Path, suite, job_id: str) -> str:
    """The sbatch script submitit wrote for `job_id` (an array's script lives under the array's id)."""
    job = submitit.SlurmJob(folder=files.submitit_folder(out, suite.name), job_id=job_id.split("_")[0])
    return job.paths.submission_file.read_text()


def _submit_mocked(suite, out: Path) -> str:
    """Submit under submitit's mocked sbatch; return the script it wrote."""
    with mocked_slurm():
        assert hs.run_slurm(suite, out, wait=False, progress=False) is False
    array_id = hs.read_manifest(out, suite.name)["arrays"][-1]["job_id"]
    return _submitted_script(out, suite, array_id)


def test_submitted_script_has_every_option_and_counts_only_unfinished_runs(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm=FULL_SLURM, seeds=(0, 1, 2, 3)))
    out = (tmp_path / "results").absolute()
    write_record(out, suite.runs[0], RunStatus.FINISHED)
    write_record(out, suite.runs[1], "error")  # retried
    text = _submit_mocked(suite, out)
    lines = _sbatch_lines(text)
    for expected in ["#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=high",
                     "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB",
                     "#SBATCH --time=1564", "#SBATCH --constraint=a100", "#SBATCH --mail-type=END",
                     "#SBATCH --exclusive", "#SBATCH --array=0-2%2", "#SBATCH --job-name=slurm_unit",
                     "#SBATCH --signal=USR2@90", "#SBATCH --nodes=1",
                     "#SBATCH --ntasks-per-node=2"]:  # one task per GPU (README "Several GPUs and nodes")
        assert expected in lines, (expected, lines)
    setup_at = text.index("# setup")
    assert text.index("module load cuda/12.1") > setup_at
    assert text.index("source ~/venv/bin/activate") < text.index("srun --unbuffered")
    folder = str(files.submitit_folder(out, suite.name))
    assert folder.startswith(str(out)) and folder.endswith("slurm_unit/submitit/%j")
    assert f"{folder.replace('%j', '%A_%a')}/%A_%a_0_log.out" in text


def test_preview_lists_the_executor_parameters_and_the_array_without_submitting(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm=FULL_SLURM, seeds=(0, 1, 2, 3)))
    out = tmp_path / "results"
    write_record(out, suite.runs[0], RunStatus.FINISHED)
    write_record(out, suite.runs[1], "error")  # retried
    text = hs.sbatch_preview(suite, out)
    for expected in ["slurm_partition='gpu'", "slurm_account='lab'", "gpus_per_node=2", "cpus_per_task=8",
                     "mem_gb=64", "timeout_min=1564", "slurm_constraint='a100'", "slurm_max_num_timeout=5",
                     "slurm_additional_parameters={'mail-type': 'END', 'exclusive': True}",
                     "name='slurm_unit'", "job array of 3 runs, at most 2 at once"]:
        assert expected in text, (expected, text)
    assert not files.submitit_root(out, suite.name).exists()  # nothing submitted, nothing written
    # force counts the finished run too; one run is a plain job, not an array
    assert "job array of 4 runs, at most 2 at once" in hs.sbatch_preview(suite, out, force=True)
    assert "one job (a single run)" in hs.sbatch_preview(suite, out, n=1)


def test_use_srun_false_and_timeout_min(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm={"use_srun": False, "timeout_min": 45}))
    text = _submit_mocked(suite, (tmp_path / "r").absolute())
    assert "srun --unbuffered" not in text and "#SBATCH --time=45" in _sbatch_lines(text)
    assert "#SBATCH --array=0-2%3" in _sbatch_lines(text)  # default parallelism 256, capped at n
    default = load_suite(write_suite(tmp_path, name="default", slurm=None))
    text = _submit_mocked(default, (tmp_path / "r").absolute())
    assert f"#SBATCH --time={DEFAULT_TIMEOUT_MIN}" in _sbatch_lines(text)


def test_mocked_submission_writes_a_manifest_and_one_pickle_per_run(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm=FULL_SLURM, seeds=(0, 1, 2)))
    out = (tmp_path / "results").absolute()
    write_record(out, suite.runs[2], RunStatus.FINISHED)
    script = _submit_mocked(suite, out)
    manifest = hs.read_manifest(out, suite.name)
    jobs = {run_id: entry["job_id"] for run_id, entry in manifest["runs"].items()}
    assert jobs == {suite.runs[0].run_id: "12_0", suite.runs[1].run_id: "12_1"}
    assert manifest["arrays"][0]["job_id"] == "12"
    assert manifest["runs"][suite.runs[0].run_id]["config"] == suite.runs[0].config.resolved
    assert "#SBATCH --array=0-1%2" in _sbatch_lines(script)
    # each array task's pickle holds a SlurmRun for its own spec, with the suite's requeue budget
    delayed = collect.slurm_job(out, suite.name, "12_1").submission()
    assert isinstance(delayed.function, hs.SlurmRun) and delayed.function.max_requeues == 5
    assert delayed.args[0].run_id == suite.runs[1].run_id and delayed.args[1] == str(out)


# -- collection of ended jobs (mocked sacct) ---------------------------------------------------------------

def _set_states(mock, states: dict[str, str]) -> None:
    mock.job_sacct.clear()
    mock.job_sacct["x"] = "JobID|State\n" + "\n".join(f"{jid}|{state}" for jid, state in states.items())


def _job(out, suite, job_id):
    return collect.slurm_job(Path(out).absolute(), suite.name, job_id)


def test_collection_records_outcomes_and_resubmits_only_what_is_not_finished_or_live(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm={"array_parallelism": 8, "max_requeues": 2},
                                   seeds=(0, 1, 2, 3, 4, 5, 6, 7, 8)))
    out = (tmp_path / "results").absolute()
    runs = suite.runs
    with mocked_slurm() as mock:
        assert hs.run_slurm(suite, out, wait=False, progress=False) is False
        ids = {spec.run_id: hs.read_manifest(out, suite.name)["runs"][spec.run_id]["job_id"] for spec in runs}
        # 0 finished by its job; 1 cancelled; 2 raised (error pickle); 3 killed (no pickle, log only);
        # 4 stopped at a step boundary with its requeues spent (SlurmRun.checkpoint returned None);
        # 5 still running; 6 TIMEOUT state; 7 OUT_OF_MEMORY; 8 NODE_FAIL
        write_record(out, runs[0], RunStatus.FINISHED, slurm_job_id=ids[runs[0].run_id], metrics={"x": 1})
        for i in (1, 3, 7, 8):
            write_record(out, runs[i], "running", slurm_job_id=ids[runs[i].run_id])
        write_record(out, runs[4], "preempted", slurm_job_id=ids[runs[4].run_id], requeues=2, step=3)
        job2 = _job(out, suite, ids[runs[2].run_id])
        write_result(job2, ("error", "Traceback (most recent call last):\nRuntimeError: boom"))
        job3 = _job(out, suite, ids[runs[3].run_id])
        job3.paths.stderr.parent.mkdir(parents=True, exist_ok=True)
        job3.paths.stderr.write_text("srun: error: vm: task 0: Killed\n")
        job4 = _job(out, suite, ids[runs[4].run_id])
        write_result(job4, ("error", "submitit.core.utils.UncompletedJobError: Job not requeued "
                                                      "because: checkpoint function returned None."))
        _set_states(mock, {ids[runs[0].run_id]: "COMPLETED", ids[runs[1].run_id]: "CANCELLED by 0",
                           ids[runs[2].run_id]: "FAILED", ids[runs[3].run_id]: "FAILED",
                           ids[runs[4].run_id]: "FAILED", ids[runs[5].run_id]: "RUNNING",
                           ids[runs[6].run_id]: "TIMEOUT", ids[runs[7].run_id]: "OUT_OF_MEMORY",
                           ids[runs[8].run_id]: "NODE_FAIL"})
        assert hs.run_slurm(suite, out, wait=False, progress=False) is False
        records = [status_of(out, spec) for spec in runs]
        assert records[0]["status"] == RunStatus.FINISHED and records[0]["metrics"] == {"x": 1}
        assert records[1]["status"] == "cancelled" and records[1]["slurm_state"] == "CANCELLED by 0"
        assert records[2]["status"] == "error" and "RuntimeError: boom" in records[2]["traceback"]
        assert records[2]["config"] == runs[2].config.resolved and records[2]["label"] == runs[2].label
        assert records[3]["status"] == "error" and "Killed" in records[3]["traceback"]
        assert "no Python traceback" in records[3]["traceback"]
        assert records[4]["status"] == "preempted" and records[4]["step"] == 3  # the run's own record stands
        assert records[5] is None  # still running: untouched
        assert records[6]["status"] == "timeout" and records[6]["slurm_state"] == "TIMEOUT"
        assert records[7]["status"] == "error" and "out of memory" in records[7]["traceback"]
        assert records[7]["slurm_state"] == "OUT_OF_MEMORY"
        assert records[8]["status"] == "preempted" and records[8]["slurm_state"] == "NODE_FAIL"
        manifest = hs.read_manifest(out, suite.name)
        resubmitted = {r for r, e in manifest["runs"].items() if e["job_id"].startswith("13_")}
        # 4 is not: its 2 requeues are slurm.max_requeues
        assert resubmitted == {runs[i].run_id for i in (1, 2, 3, 6, 7, 8)}
        assert manifest["runs"][runs[5].run_id]["job_id"] == ids[runs[5].run_id]
        assert manifest["runs"][runs[0].run_id]["collected"] == RunStatus.FINISHED
        assert manifest["runs"][runs[4].run_id]["collected"] == "preempted"
        assert "#SBATCH --array=0-5%6" in _sbatch_lines(_submitted_script(out, suite, "13"))
        # a third call with everything live submits nothing and collect_slurm reports the counts
        _set_states(mock, {**{f"13_{i}": "PENDING" for i in range(6)}, ids[runs[5].run_id]: "RUNNING"})
        assert hs.run_slurm(suite, out, wait=False, progress=False) is False
        assert len(hs.read_manifest(out, suite.name)["arrays"]) == 2
        counts = hs.collect_slurm(suite.name, out)
        assert counts == {"finished": 1, "running": 1, "pending": 6, "failed": 1}


def test_waiting_is_bounded_and_a_cancelled_pending_job_keeps_an_earlier_error(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm={"wait_timeout_min": 0.02, "poll_interval_s": 0.2},
                                   seeds=(0, 1)))
    out = (tmp_path / "results").absolute()
    write_record(out, suite.runs[1], "error", slurm_job_id="7_0", traceback="old failure")
    with mocked_slurm() as mock:
        start = time.monotonic()
        assert hs.run_slurm(suite, out, wait=True, progress=False) is False  # mocked jobs stay RUNNING
        assert time.monotonic() - start < 10
        _set_states(mock, {"12_0": "RUNNING", "12_1": "CANCELLED by 0"})
        counts = hs.collect_slurm(suite.name, out)
    assert counts["running"] == 1
    # the job never started the run: the earlier error stays (it is retried from scratch next time)
    assert status_of(out, suite.runs[1])["traceback"] == "old failure"


def test_unknown_state_with_a_result_pickle_counts_as_ended(tmp_path):
    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    out = (tmp_path / "results").absolute()
    with mocked_slurm() as mock:
        hs.run_slurm(suite, out, wait=False, progress=False)
        job_id = hs.read_manifest(out, suite.name)["runs"][suite.runs[0].run_id]["job_id"]
        assert job_id == "12"  # a batch of one is a plain job
        write_record(out, suite.runs[0], RunStatus.FINISHED, slurm_job_id=job_id)
        job = _job(out, suite, job_id)
        write_result(job, ("success", {"status": "finished"}))
        mock.job_sacct.clear()  # sacct knows nothing: state UNKNOWN
        assert hs.collect_slurm(suite.name, out)["finished"] == 1
        assert hs.read_manifest(out, suite.name)["runs"][suite.runs[0].run_id]["collected"] == RunStatus.FINISHED


@pytest.mark.parametrize("state, status, resumable", [
    ("TIMEOUT", RunStatus.TIMEOUT, True), ("DEADLINE", RunStatus.TIMEOUT, True),
    ("PREEMPTED", RunStatus.PREEMPTED, True), ("NODE_FAIL", RunStatus.PREEMPTED, True),
    ("OUT_OF_MEMORY", RunStatus.ERROR, True), ("CANCELLED by 0", RunStatus.CANCELLED, False),
    ("FAILED", RunStatus.ERROR, False), ("BOOT_FAIL", RunStatus.ERROR, False), ("VANISHED", RunStatus.ERROR, False),
])
def test_slurm_state_maps_to_a_status_and_says_whether_the_run_resumes(state, status, resumable):
    assert states.status_for(state) is status
    assert states.is_resumable(state) is resumable
    record = {"status": status.value, "slurm_state": state}
    assert states.ended_resumable(record) is resumable
    assert not states.ended_resumable({"status": "finished", "slurm_state": state})


def test_requeued_and_held_jobs_stay_active_until_they_end(tmp_path, monkeypatch):
    # measured on the local cluster: after `scontrol requeue` sacct shows REQUEUED, then PENDING (never a
    # final state); submitit's done() knows those, but calls a SUSPENDED job done
    suite = load_suite(write_suite(tmp_path, seeds=(0, 1)))
    out = (tmp_path / "results").absolute()
    with mocked_slurm() as mock:
        hs.run_slurm(suite, out, wait=False, progress=False)
        write_record(out, suite.runs[0], "preempted", slurm_job_id="12_0", requeues=1)
        write_record(out, suite.runs[1], "running", slurm_job_id="12_1")
        for requeued in ("REQUEUED", "PENDING"):
            _set_states(mock, {"12_0": requeued, "12_1": "SUSPENDED"})
            assert hs.collect_slurm(suite.name, out)["pending"] == 2
            assert status_of(out, suite.runs[0])["status"] == "preempted"
        _set_states(mock, {"12_0": "RUNNING", "12_1": "FAILED"})
        assert hs.collect_slurm(suite.name, out) == {"finished": 0, "running": 1, "pending": 0, "failed": 1}
        assert status_of(out, suite.runs[1])["status"] == "error"
        # PREEMPTED: submitit waits for a requeue; in the queue it is one, out of it the job ended
        write_record(out, suite.runs[0], "running", slurm_job_id="12_0", requeues=1)
        _set_states(mock, {"12_0": "PREEMPTED"})
        monkeypatch.setattr(collect, "queued_job_ids", lambda: {"12_0"})
        assert hs.collect_slurm(suite.name, out)["pending"] == 1
        monkeypatch.setattr(collect, "queued_job_ids", lambda: set())
        assert hs.collect_slurm(suite.name, out)["failed"] == 2
        record = status_of(out, suite.runs[0])
        assert record["status"] == "preempted" and record["slurm_state"] == "PREEMPTED"


def test_a_run_whose_requeues_are_spent_is_not_resubmitted_unless_forced(tmp_path):
    suite = load_suite(write_suite(tmp_path, slurm={"max_requeues": 1}, seeds=(0, 1, 2)))
    out = (tmp_path / "results").absolute()
    write_record(out, suite.runs[0], "timeout", slurm_state="TIMEOUT", requeues=1)  # spent
    write_record(out, suite.runs[1], "error", slurm_state="OUT_OF_MEMORY", requeues=0)  # one left
    write_record(out, suite.runs[2], "error", slurm_state="FAILED", requeues=5)  # an error is retried
    todo = hs.runs_to_submit(suite, out, max_requeues=1)
    assert [spec.run_id for spec in todo] == [suite.runs[1].run_id, suite.runs[2].run_id]
    assert len(hs.runs_to_submit(suite, out, force=True, max_requeues=1)) == 3


def test_a_job_unknown_to_sacct_and_gone_from_the_queue_is_recorded_as_vanished(tmp_path):
    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    out = (tmp_path / "results").absolute()
    with mocked_slurm() as mock:
        hs.run_slurm(suite, out, wait=False, progress=False)
        mock.job_sacct.clear()
        assert hs.collect_slurm(suite.name, out)["pending"] == 1  # just submitted: sacct may lag
        manifest = hs.read_manifest(out, suite.name)
        manifest["runs"][suite.runs[0].run_id]["submitted_ts"] -= 120
        files.write_manifest(out, suite.name, manifest)
        assert hs.collect_slurm(suite.name, out)["failed"] == 1
    record = status_of(out, suite.runs[0])
    assert record["status"] == "error" and "sacct has no record" in record["traceback"]
    assert record["slurm_state"] == "VANISHED"


def test_slurm_executor_without_srun_is_a_clear_error(tmp_path, monkeypatch):
    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    monkeypatch.setattr(settings.shutil, "which", lambda name: None)
    with pytest.raises(hs.SlurmError, match="srun is not on PATH"):
        hs.run_slurm(suite, tmp_path / "r", wait=False, progress=False)


# -- SlurmRun: worker thread, checkpoint, requeue count -----------------------------------------------------

class FakeRunner:
    """Stands in for runner.execute_run: writes records like it and loops until should_stop()."""

    def __init__(self, finish_after: float | None = None):
        self.calls: list[dict] = []
        self.started = threading.Event()
        self.finish_after = finish_after

    def __call__(self, spec, out, force=False, progress=True, extra=None, should_stop=None):
        directory = store.run_dir(out, spec.suite, spec.run_id)
        previous = store.read_record(directory) or {}
        self.calls.append({"force": force, "extra": dict(extra or {})})
        record = {"run_id": spec.run_id, "suite": spec.suite, "status": "running",
                  "requeues": previous.get("requeues", 0), **(extra or {})}
        with store.RunLock(directory) as lock:
            assert lock.acquired
            store.write_json(directory / store.RECORD, record)
            self.started.set()
            start = time.monotonic()
            while not should_stop():
                if self.finish_after is not None and time.monotonic() - start > self.finish_after:
                    record["status"] = RunStatus.FINISHED
                    break
                time.sleep(0.01)
            else:
                record.update(status="preempted", step=3)
            store.write_json(directory / store.RECORD, record)
        return record


def test_checkpoint_stops_the_run_counts_the_requeue_and_resubmits(tmp_path, monkeypatch):
    import harness.runner

    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    spec, out = suite.runs[0], str(tmp_path / "results")
    fake = FakeRunner()
    monkeypatch.setattr(harness.runner, "execute_run", fake)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    job = hs.SlurmRun(force=True, checkpoint_wait_s=10)
    results = {}
    caller = threading.Thread(target=lambda: results.update(first=job(spec, out)))
    caller.start()
    assert fake.started.wait(10)
    delayed = job.checkpoint(spec, out)
    caller.join(10)
    assert not caller.is_alive()
    assert results["first"]["status"] == "preempted" and results["first"]["slurm_job_id"] == "40_3"
    assert fake.calls[0]["force"] is True and fake.calls[0]["extra"]["torch_threads"] == 1
    record = status_of(Path(out), spec)
    assert record["status"] == "preempted" and record["requeues"] == 1 and record["slurm_job_id"] == "40_3"
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is job and delayed.args == (spec, out)
    # the resubmission pickles (no thread/event inside) and resumes without force, with the count
    resumed = cloudpickle.loads(cloudpickle.dumps(delayed))
    fake.started.clear()
    fake.finish_after = 0.05
    monkeypatch.setattr(harness.runner, "execute_run", fake)
    assert resumed.result()["status"] == RunStatus.FINISHED
    assert fake.calls[1]["force"] is False and fake.calls[1]["extra"]["requeues"] == 1
    assert status_of(Path(out), spec)["requeues"] == 1


def test_checkpoint_after_the_run_finished_does_not_requeue(tmp_path, monkeypatch):
    import harness.runner

    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    spec, out = suite.runs[0], str(tmp_path / "results")
    fake = FakeRunner(finish_after=0.0)
    monkeypatch.setattr(harness.runner, "execute_run", fake)
    job = hs.SlurmRun()
    assert job(spec, out)["status"] == RunStatus.FINISHED
    assert job.checkpoint(spec, out) is None
    assert status_of(Path(out), spec)["requeues"] == 0


def test_checkpoint_with_the_requeues_spent_stops_the_run_without_requeue(tmp_path, monkeypatch):
    import harness.runner

    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    spec, out = suite.runs[0], str(tmp_path / "results")
    write_record(Path(out), spec, "preempted", requeues=2, slurm_job_id="7")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    fake = FakeRunner()
    monkeypatch.setattr(harness.runner, "execute_run", fake)
    job = hs.SlurmRun(max_requeues=2, checkpoint_wait_s=10)
    caller = threading.Thread(target=lambda: job(spec, out))
    caller.start()
    assert fake.started.wait(10)
    assert job.checkpoint(spec, out) is None  # submitit ends the job instead of requeueing it
    caller.join(10)
    record = status_of(Path(out), spec)
    assert record["status"] == "preempted" and record["requeues"] == 2


def test_a_resubmitted_job_counts_one_requeue_of_an_interrupted_run(tmp_path, monkeypatch):
    import harness.runner

    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    spec, out = suite.runs[0], str(tmp_path / "results")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "21")
    fake = FakeRunner(finish_after=0.0)
    monkeypatch.setattr(harness.runner, "execute_run", fake)
    write_record(Path(out), spec, "error", slurm_state="OUT_OF_MEMORY", slurm_job_id="20", requeues=1)
    assert hs.SlurmRun()(spec, out)["status"] == RunStatus.FINISHED
    assert fake.calls[-1]["extra"]["requeues"] == 2 and fake.calls[-1]["force"] is False
    # an error that is not the infrastructure's (a retry), or --force, counts nothing
    write_record(Path(out), spec, "error", slurm_state="FAILED", slurm_job_id="20", requeues=1)
    hs.SlurmRun()(spec, out)
    assert fake.calls[-1]["extra"]["requeues"] == 1


def test_an_exception_outside_the_runner_reaches_submitit(tmp_path, monkeypatch):
    import harness.runner

    def broken(*args, **kwargs):
        raise OSError("disk full")

    suite = load_suite(write_suite(tmp_path, seeds=(0,)))
    monkeypatch.setattr(harness.runner, "execute_run", broken)
    with pytest.raises(OSError, match="disk full"):
        hs.SlurmRun()(suite.runs[0], str(tmp_path))
