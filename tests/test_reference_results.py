"""The committed reference results (results/reference/<suite>/, made with the `cpu` profile; README "Reference
results") regenerate byte-identically from their committed records: tables and report.md are a pure
function of the records, and nobody edited them by hand."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import report
from harness.suite import load_suite

RESULTS = Path(__file__).resolve().parent.parent / "results" / "reference"
COMMITTED = sorted({p.parent.parent.parent.name for p in RESULTS.glob("*/runs/*/record.json")})
RUN_FILES = ("record.json", "history.csv", "artifacts.json")


@pytest.mark.parametrize("suite_name", COMMITTED)
def test_committed_tables_and_report_regenerate_identically(tmp_path, suite_name):
    committed = RESULTS / suite_name
    copy = tmp_path / suite_name
    for run in (committed / "runs").iterdir():
        for name in RUN_FILES:
            if (run / name).exists():
                (copy / "runs" / run.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, copy / "runs" / run.name / name)
    suite = load_suite(suite_name, profile="cpu")
    report.write_suite_report(copy, suite=suite)
    compared = sorted(committed.glob("*.tex")) + [committed / "report.md"]
    assert (committed / "report.md").exists()
    for path in compared:
        regenerated = copy / path.name
        assert regenerated.exists(), f"{path.name} was not regenerated"
        assert regenerated.read_text() == path.read_text(), f"{suite_name}/{path.name} differs from its records"


def test_the_reference_suites_are_committed():
    assert {"quickstart", "appendix_a2", "appendix_a2_sensitivity", "appendix_a4", "appendix_a8", "figures",
            "appendix_a9", "beyond_paper"} <= set(COMMITTED)


def test_reference_records_come_from_their_suites_cpu_profile():
    """Every committed record is a run of its suite as the suite file now stands (no stale records)."""
    for suite_name in COMMITTED:
        expected = {spec.run_id for spec in load_suite(suite_name, profile="cpu").runs}
        committed = {p.name for p in (RESULTS / suite_name / "runs").iterdir() if (p / "record.json").exists()}
        assert committed == expected, suite_name
