"""Which records a report reads (harness/report/loading.py): given the suite, exactly its runs (by run id);
the folder's records of another configuration (an earlier `--set`, another suite file with the same name)
are named in report.md and never averaged in; a damaged record.json is named and skipped."""
from __future__ import annotations

import logging

import pytest
import yaml

from harness import report, store
from harness.suite import load_suite

RAW = {"name": "stale", "seeds": [0, 1], "default_profile": "cpu",
       "base": {"model": {"family": "vqvae", "preset": "cpu"}, "data": {"name": "natural_patches"},
                "training": {"steps": 5}},
       "grid": {"estimator.name": ["ste", "rotation"]}, "profiles": {"cpu": {}}}


def suite_file(tmp_path, raw: dict, stem: str = "stale"):
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_records(out, suite, val_rec_loss: float) -> None:
    """A finished record per run, every run with the same validation loss."""
    for spec in suite.runs:
        store.write_json(store.run_dir(out, spec.suite, spec.run_id) / store.RECORD,
                         {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "config": spec.config.resolved,
                          "profile": "cpu", "status": "finished", "metrics": {"val_rec_loss": val_rec_loss}})


def row_of(md: str, approach: str) -> str:
    """The approach's table row, without bold (both approaches tie)."""
    return next(line for line in md.splitlines() if line.startswith(f"| {approach} (n=")).replace("**", "")


@pytest.fixture
def two_configurations(tmp_path):
    """One folder: the suite run with steps=5 (val 0.5) and again with --set training.steps=6 (val 0.1), plus
    another suite file with the same name and another base (val 0.9)."""
    path = suite_file(tmp_path, RAW)
    out = tmp_path / "out"
    old, new = load_suite(path), load_suite(path, overrides=["training.steps=6"])
    other = load_suite(suite_file(tmp_path, {**RAW, "base": {**RAW["base"], "data": {"name": "natural_patches",
                                                                                   "size": 16}}}, "other"))
    write_records(out, old, 0.5)
    write_records(out, new, 0.1)
    write_records(out, other, 0.9)
    return {"out": out, "dir": store.suite_dir(out, "stale"), "old": old, "new": new, "other": other}


def test_only_the_runs_of_the_current_configuration_are_counted(two_configurations):
    new, directory = two_configurations["new"], two_configurations["dir"]
    report.write_suite_report(directory, suite=new, figures=False)
    md = (directory / "report.md").read_text()
    for approach in ("ste", "rotation"):
        assert row_of(md, approach) == f"| {approach} (n=2) | 0.1000 ± 0.0000 |"  # not 0.5 or 0.9 mixed in
    assert "- Runs: 4 (finished: 4)" in md and "steps = 6" in md and "steps = 5" not in md
    outside = sorted(s.run_id for s in two_configurations["old"].runs + two_configurations["other"].runs)
    line = next(l for l in md.splitlines() if l.startswith("- Not part of this suite:"))
    assert line.startswith("- Not part of this suite: 8 records in this folder from another configuration")
    assert line.endswith("not counted: " + ", ".join(f"`{i}`" for i in outside))
    results = (directory / "results.csv").read_text()
    assert all(s.run_id in results for s in new.runs) and not any(i in results for i in outside)


def test_the_earlier_configuration_reports_its_own_runs(two_configurations):
    directory = two_configurations["dir"]
    report.write_suite_report(directory, suite=two_configurations["old"], figures=False)
    md = (directory / "report.md").read_text()
    assert row_of(md, "ste") == "| ste (n=2) | 0.5000 ± 0.0000 |"


def test_without_a_suite_every_record_is_reported(two_configurations):
    directory = two_configurations["dir"]
    loaded = report.load_results(directory)
    assert len(loaded.records) == 12 and loaded.outside == () and loaded.expected is None
    report.write_suite_report(directory, figures=False)
    md = (directory / "report.md").read_text()
    assert "- Runs: 12 (finished: 12)" in md and "Not part of this suite" not in md


def test_a_suite_with_no_recorded_run_says_so(two_configurations, tmp_path):
    directory = two_configurations["dir"]
    fresh = load_suite(suite_file(tmp_path, RAW), overrides=["training.steps=7"])
    result = report.write_suite_report(directory, suite=fresh, figures=False)
    md = (directory / "report.md").read_text()
    assert "- Not recorded: 4 of the suite's 4 runs" in md and "- Not part of this suite: 12 records" in md
    assert "## Tables" not in md and not (directory / "results.csv").exists()
    assert result["summary"].startswith("(none of the suite's 4 runs recorded")


def test_a_damaged_record_is_named_and_skipped(tmp_path, caplog):
    suite = load_suite(suite_file(tmp_path, RAW))
    out = tmp_path / "out"
    write_records(out, suite, 0.2)
    broken = sorted(suite.runs, key=lambda s: s.run_id)[0]
    (store.run_dir(out, suite.name, broken.run_id) / store.RECORD).write_text('{"run_id": "trunc')
    directory = store.suite_dir(out, suite.name)
    with caplog.at_level(logging.WARNING, logger="harness.report.loading"):
        result = report.write_suite_report(directory, suite=suite, figures=False)
    assert f"{broken.run_id}/record.json: damaged run record (not JSON" in caplog.text
    md = (directory / "report.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith("- Damaged records, not read:"))
    assert f"`runs/{broken.run_id}/record.json (not JSON: " in line
    assert "- Runs: 3 (finished: 3)" in md and "- Not recorded: 1 of the suite's 4 runs" in md
    assert directory / "report.md" in result["files"]
    assert broken.run_id not in (directory / "results.csv").read_text()
