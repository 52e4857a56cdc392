"""The metrics registry (harness/report/metrics.py) and the paper's numbers (harness/paper_numbers.py): every
paper column is a registered metric with a direction, the README's metric table is the registry's, and the
claims read off the paper's tables point the way the paper's numbers do."""
from __future__ import annotations

from pathlib import Path

from harness import paper_numbers, report

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_paper_column_is_a_registered_metric_with_a_direction():
    for table_id, table in paper_numbers.TABLES.items():
        for name in table["columns"]:
            assert name in report.METRICS and report.metric(name).better in ("up", "down"), (table_id, name)
    for name in report.SUITE_TABLE_METRICS + report.FIDELITY_METRICS:
        assert name in report.METRICS and report.metric(name).definition, name


def test_registry_entries_are_well_formed():
    for name, entry in report.METRICS.items():
        assert entry.name == name and entry.header and entry.definition.endswith("."), name
        assert entry.better in ("up", "down", None), name
        assert entry.label == (f"{entry.header} {entry.arrow}" if entry.better else entry.header)
    assert report.metric("train_usage_batch").percent and not report.metric("val_rec_loss").percent
    assert report.fmt_value(0.8025, "train_usage_batch") == "80.2"  # shown in percent
    unknown = report.metric("val_distortion")  # a family's own metric: shown under its name, no direction
    assert (unknown.header, unknown.better, unknown.label) == ("val_distortion", None, "val_distortion")


def test_readme_metric_table_is_the_registry():
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    assert report.markdown_metric_table() in section
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in section.splitlines()
            if line.startswith("| `")}
    assert set(rows) == set(report.METRICS)
    for name, cells in rows.items():
        entry = report.metric(name)
        assert cells[1] == entry.header, name
        assert cells[2] == {"up": "↑ higher", "down": "↓ lower", None: "—"}[entry.better], name


def test_paper_numbers_are_consistent():
    for table_id, table in paper_numbers.TABLES.items():
        for row in table["rows"]:
            assert list(row["values"]) == table["columns"], (table_id, row)
            assert row["setting"] in table["settings"] and row["kind"] in ("run", "reported")
    assert paper_numbers.value("table1", "euclidean_8192x3", "gumbel", "train_quant_error") is None
    assert paper_numbers.value("table3", "ldm_f8", "rotation", "r_fid") == 1.1
    assert paper_numbers.value("table5", "bair", "ste", "r_fvd") == 1661.1
    claims = {(c.setting, c.metric, c.baseline): c.direction for c in report.claims("table1")}
    assert claims[("euclidean_1024x32", "train_usage_batch", "ste")] == "worse"
    assert claims[("euclidean_1024x32", "r_fid", "ste")] == "better"
    assert claims[("euclidean_8192x3", "val_rec_loss", "ste")] == "tie"
    assert ("euclidean_8192x3", "train_quant_error", "gumbel") not in claims  # '—' in the paper
    t7 = {(c.setting, c.metric): c.direction for c in report.claims("table7")}
    assert t7[("ldm_f4", "train_usage_batch")] == "better" and t7[("ldm_f8", "val_loss")] == "tie"
    t2 = report.claims("table2")  # the numbers the paper quotes from Esser et al. are not its claims
    assert all(c.paper_baseline != 7.9 for c in t2 if c.metric == "r_fid")
    (a8_vqgan, a8_vqvae) = report.section_claims("A.8")
    assert (a8_vqvae.approach, a8_vqvae.baseline, a8_vqvae.direction, a8_vqvae.ratio) == \
        ("rotation", "reflection", "better", 2.0)
    assert a8_vqgan.metric == "val_loss" and a8_vqvae.metric == "val_rec_loss"
