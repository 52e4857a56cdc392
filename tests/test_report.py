"""The report package (harness/report/) on fake run folders with known metric values (no training):
confidence intervals, paired tests, bold best values, paper rows, the agreement section, the fidelity note,
determinism and make-report. Plus: every paper suite loads in both profiles and maps its runs onto the
paper's settings. Verdicts on constructed data: test_report_verdicts.py; which records a report reads:
test_report_loading.py; the metrics registry and the paper's numbers: test_report_metrics.py."""
from __future__ import annotations

import hashlib
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

import models
from harness import paper_numbers, report, runner, store
from harness.report.formatting import as_list
from harness.report.latex import block_heading
from harness.report.names import paper_name
from harness.cli import make_report_main
from harness.suite import SUITES_DIR, load_suite

SEEDS = (0, 1, 2)
#: per-seed relative noise (different per approach, so paired differences are not constant)
NOISE = {0: {"ste": 0.10, "rotation": -0.20, "exact": 0.30},
         1: {"ste": -0.30, "rotation": 0.10, "exact": 0.00},
         2: {"ste": 0.20, "rotation": 0.30, "exact": -0.10}}
#: base values per setting (lookup) and approach; the euclidean setting has the STE best on train_rec_loss
METRICS = ("train_usage_batch", "train_rec_loss", "train_quant_error", "val_rec_loss")
BASE = {
    "euclidean": {"ste": dict(zip(METRICS, (0.50, 0.07, 1e-3, 0.11))),
                  "rotation": dict(zip(METRICS, (0.80, 0.08, 2e-4, 0.09))),
                  "exact": dict(zip(METRICS, (0.60, 0.12, 5e-4, 0.13)))},
    "cosine": {"ste": dict(zip(METRICS, (0.40, 0.10, 1e-3, 0.12))),
               "rotation": dict(zip(METRICS, (0.70, 0.08, 2e-4, 0.10))),
               "exact": dict(zip(METRICS, (0.55, 0.12, 5e-4, 0.14)))},
}
FIDELITY_NOTE = ("r-FID/r-IS not computed: no Inception weights (set ROTATION_HARNESS_INCEPTION_WEIGHTS or "
                 "metrics.inception_weights)")
SETTING_OF = {"euclidean": "euclidean_1024x32", "cosine": "cosine_8192x3"}


def metric_value(lookup: str, approach: str, metric: str, seed: int) -> float:
    return BASE[lookup][approach][metric] * (1.0 + 0.05 * NOISE[seed][approach])


def failed(lookup: str, approach: str, seed: int) -> bool:
    """exact in the cosine setting finishes for seed 0 only (n = 1: no interval, no paired test)."""
    return lookup == "cosine" and approach == "exact" and seed != 0


SUITE = {
    "name": "fake_table1",
    "description": "fake records for the report tests",
    "seeds": list(SEEDS),
    "default_profile": "cpu",
    "base": {"model": {"family": "vqvae", "preset": "cpu"}, "data": {"name": "natural_patches", "size": 32},
             "training": {"steps": 5}, "metrics": {"fidelity": True}},
    "grid": {"estimator.name": ["ste", "rotation", "exact"]},
    "zip": [{"model.lookup": ["euclidean", "cosine"], "model.latent_dim": [32, 3]}],
    "profiles": {"cpu": {}},
    "paper": {"table": "table1", "settings": [
        {"table": "table1", "setting": "euclidean_1024x32", "match": {"model.lookup": "euclidean"}},
        {"table": "table1", "setting": "cosine_8192x3", "match": [{"model.lookup": "cosine", "model.latent_dim": 3}]},
    ]},
    "report": {"figures": ["push_pull"]},
}


def write_fake_runs(out: Path, suite) -> None:
    for spec in suite.runs:
        lookup, approach, seed = spec.config.model.params.lookup, spec.config.estimator.name, spec.config.seed
        directory = store.run_dir(out, spec.suite, spec.run_id)
        record = {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": "cpu",
                  "config": spec.config.resolved, "status": "finished", "step": 5, "started": "x", "finished": "y",
                  "provenance": {"git_commit": "0123456789abcdef0123", "git_dirty": False}}
        if failed(lookup, approach, seed):
            record.update(status="error", traceback="Traceback ...\nRuntimeError: boom")
        else:
            metrics = {m: metric_value(lookup, approach, m, seed) for m in BASE[lookup][approach]}
            metrics.update(val_psnr=20.0 + seed, steps=5, wall_time_s=1.0)
            record.update(metrics=metrics, notes={"fidelity": FIDELITY_NOTE, "train_window": [3, 4]})
        store.write_json(directory / store.RECORD, record)
        scale = BASE[lookup][approach]["train_rec_loss"]
        rows = [{"kind": "train", "step": s, "rec_loss": scale * (5 - s), "usage_batch": 0.1 * s,
                 "quant_error": 1e-3 / (s + 1)} for s in range(5)]
        rows += [{"kind": "eval", "step": s, "val_rec_loss": scale * (6 - s)} for s in (2, 5)]
        store.write_history(directory / store.HISTORY, rows)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    path = directory / "fake_table1.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    suite = load_suite(path)
    out = directory / "results"
    write_fake_runs(out, suite)
    suite_dir = store.suite_dir(out, suite.name)
    result = report.write_suite_report(suite_dir, suite=suite)
    df = store.load_results(suite_dir)
    tables = report.build_tables(df, suite)
    return {"path": path, "suite": suite, "out": out, "dir": suite_dir, "result": result, "tables": tables,
            "md": (suite_dir / "report.md").read_text(), "tex": (suite_dir / "table1.tex").read_text()}


def values_of(lookup: str, approach: str, metric: str) -> dict:
    return {s: metric_value(lookup, approach, metric, s) for s in SEEDS if not failed(lookup, approach, s)}


def block_of(fake, lookup: str):
    (table,) = fake["tables"]
    return next(b for b in table.blocks if b.setting == SETTING_OF[lookup])


def tex_rows(tex: str) -> dict:
    """{block header line: {row name: [cells]}} from a LaTeX table (the `below` style's interval rows, whose
    name is empty, left out: tex_intervals)."""
    blocks, current = {}, None
    for line in tex.splitlines():
        if line.startswith(r"\multicolumn"):
            current = line
            blocks[current] = {}
        elif current is not None and line.endswith(r"\\") and " & " in line and not line.startswith(" & "):
            name, *cells = line[:-2].strip().split(" & ")
            blocks[current][name] = [c.strip() for c in cells]
    return blocks


def tex_name(approach: str, paper: bool = False) -> str:
    """The row name of an approach in the LaTeX tables: the paper's name (harness.report.names)."""
    return report.latex_name(paper_name(approach, "table1") + (" (paper)" if paper else ""))


def tex_block_of(fake, rows: dict, lookup: str) -> dict:
    table, block = fake["tables"][0], block_of(fake, lookup)
    heading = report.latex_escape(block_heading(block, "ab"[table.blocks.index(block)]))
    return next(v for k, v in rows.items() if heading in k)


def unstack(head: str) -> str:
    """A two-line LaTeX column header as one line."""
    match = re.fullmatch(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}(.*)\\\\(.*)\\end\{tabular\}(.*)", head)
    return f"{match.group(1)} {match.group(2)}{match.group(3)}" if match else head


# -- statistics ------------------------------------------------------------------------------------------

def test_one_table_with_a_block_per_setting(fake):
    (table,) = fake["tables"]
    assert table.ref == "table1" and table.columns == paper_numbers.TABLES["table1"]["columns"]
    assert [b.setting for b in table.blocks] == ["euclidean_1024x32", "cosine_8192x3"]  # the paper's order
    assert [p.name for p in fake["result"]["files"]][:2] == ["results.csv", "table1.tex"]
    assert fake["tex"].count(r"\multicolumn") == 2 and fake["tex"].count(r"\midrule") == 2
    assert r"\toprule" in fake["tex"] and r"\bottomrule" in fake["tex"]
    header = next(line for line in fake["tex"].splitlines() if line.startswith("Approach &"))
    assert [unstack(h) for h in header.split(" & ")[1:]] == [r"Usage (\%) $\uparrow$", r"Train rec. $\downarrow$",
                                        r"Quant. err. $\downarrow$", r"Val rec. $\downarrow$",
                                        r"r-FID $\downarrow$", r"r-IS $\uparrow$ \\"]


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
@pytest.mark.parametrize("approach", ["ste", "rotation", "exact"])
def test_confidence_interval_is_scipys_t_interval(fake, lookup, approach):
    row = block_of(fake, lookup).ours(approach)
    for metric in BASE[lookup][approach]:
        data = np.array(list(values_of(lookup, approach, metric).values()))
        cell = row.cells[metric]
        assert cell.n == len(data)
        assert cell.mean == pytest.approx(data.mean(), rel=1e-12)
        if len(data) == 1:
            assert cell.half is None
            text = report.fmt_value(data.mean(), metric)
            assert "±" not in report.fmt_mean_ci(cell.mean, cell.half, metric)
        else:
            low, high = stats.t.interval(0.95, len(data) - 1, loc=data.mean(), scale=stats.sem(data))
            assert cell.half == pytest.approx((high - low) / 2, rel=1e-10)
            # independently: t quantile × s / sqrt(n)
            assert cell.half == pytest.approx(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1)
                                              / math.sqrt(len(data)), rel=1e-10)
            text = report.fmt_mean_ci(data.mean(), (high - low) / 2, metric)
            assert " ± " in text
        md_row = next(line for line in fake["md"].split(f"**{block_of(fake, lookup).label}**")[1].splitlines()
                      if line.startswith(f"| {approach} (n="))
        assert text in md_row


def test_one_seed_shows_the_mean_alone(fake):
    md_block = fake["md"].split(f"**{block_of(fake, 'cosine').label}**")[1]
    row = next(line for line in md_block.splitlines() if line.startswith("| exact (n=1 of 3)"))
    assert "±" not in row
    assert report.fmt_value(metric_value("cosine", "exact", "val_rec_loss", 0), "val_rec_loss") in row


@pytest.mark.parametrize("lookup", ["euclidean", "cosine"])
def test_paired_p_value_is_ttest_rel(fake, lookup):
    block = block_of(fake, lookup)
    for metric in BASE[lookup]["ste"]:
        rot, ste = values_of(lookup, "rotation", metric), values_of(lookup, "ste", metric)
        expected = stats.ttest_rel([rot[s] for s in SEEDS], [ste[s] for s in SEEDS]).pvalue
        cell = block.ours("rotation").cells[metric]
        assert cell.pairs == 3 and cell.p == pytest.approx(expected, rel=1e-10)
        line = next(l for l in fake["md"].splitlines() if l.startswith(f"| {SETTING_OF[lookup]} | rotation |"))
        assert f"{report.fmt_p(expected)} (3 pairs)" in line
    assert block.ours("ste").cells["val_rec_loss"].p is None  # the baseline itself
    if lookup == "cosine":  # exact has one finished seed: fewer than 2 pairs
        cell = block.ours("exact").cells["val_rec_loss"]
        assert cell.p is None and cell.pairs == 1
        line = next(l for l in fake["md"].splitlines() if l.startswith("| cosine_8192x3 | exact |"))
        assert "n/a (1 pairs)" in line


def test_dagger_marks_p_below_005(fake):
    rows = tex_rows(fake["tex"])
    columns = paper_numbers.TABLES["table1"]["columns"]
    for lookup in ("euclidean", "cosine"):
        block = block_of(fake, lookup)
        tex_block = tex_block_of(fake, rows, lookup)
        for approach in ("rotation", "exact"):
            for metric, cell_text in zip(columns, tex_block[tex_name(approach)]):
                p = block.ours(approach).cells[metric].p
                assert (r"^{\dagger}" in cell_text) == (p is not None and p < 0.05), (lookup, approach, metric)


def test_bold_marks_the_best_in_the_right_direction(fake):
    rows = tex_rows(fake["tex"])
    columns = paper_numbers.TABLES["table1"]["columns"]
    for lookup in ("euclidean", "cosine"):
        tex_block = tex_block_of(fake, rows, lookup)
        names = {tex_name(a): a for a in ("ste", "rotation", "exact")}
        for index, metric in enumerate(columns):
            means = {a: np.mean(list(values_of(lookup, a, metric).values())) for a in ("ste", "rotation", "exact")
                     if metric in BASE[lookup][a]}
            bold = {names[name] for name, cells in tex_block.items() if r"\mathbf" in cells[index]}
            if not means:
                assert not bold  # r-FID / r-IS not measured
                continue
            pick = max if report.metric(metric).better == "up" else min
            assert bold == {pick(means, key=means.get)}, (lookup, metric)
            assert not any(r"\mathbf" in cells[index] for name, cells in tex_block.items() if "(paper)" in name)
    # the euclidean block's train rec. loss is lowest for the STE, its usage highest for the rotation trick
    md_block = fake["md"].split(f"**{block_of(fake, 'euclidean').label}**")[1].split("**Cosine")[0]
    ste_row = next(l for l in md_block.splitlines() if l.startswith("| ste (n=3)")).split(" | ")
    rot_row = next(l for l in md_block.splitlines() if l.startswith("| rotation (n=3)")).split(" | ")
    assert ste_row[2].startswith("**") and not rot_row[2].startswith("**")
    assert rot_row[1].startswith("**") and not ste_row[1].startswith("**")


# -- the paper's rows ------------------------------------------------------------------------------------

def test_paper_rows_printed_beside_ours(fake):
    rows = tex_rows(fake["tex"])
    columns = paper_numbers.TABLES["table1"]["columns"]
    for lookup in ("euclidean", "cosine"):
        setting = SETTING_OF[lookup]
        tex_block = tex_block_of(fake, rows, lookup)
        names = list(tex_block)
        paper = paper_numbers.rows("table1", setting)
        assert sorted(n for n in names if "(paper)" in n) == sorted(tex_name(r["approach"], True) for r in paper)
        for row in paper:
            cells = tex_block[tex_name(row["approach"], True)]
            for metric, cell in zip(columns, cells):
                value = row["values"][metric]
                expected = "---" if value is None else "$" + report.latex_number(report.fmt_paper(value, metric)) + "$"
                assert cell == expected
            # right after ours of the same approach, when we ran it
            if row["approach"] in ("ste", "rotation"):
                assert names.index(tex_name(row["approach"], True)) == names.index(tex_name(row["approach"])) + 1
    # the cosine block shows the paper's Hessian row although we did not run it
    cosine = next(v for k, v in rows.items() if "Cosine" in k)
    assert "Hessian Approx. (paper)" in cosine and "Hessian Approx." not in cosine
    md = fake["md"]
    assert "| rotation (paper) | 97 | 0.116 | 5.1e-04 | 0.122 | 85.7 | 17 |" in md
    assert "| ste (paper) | 31 | 0.034 | 1.2e-04 | 0.038 | 26 | 77.8 |" in md


def test_no_paper_rows_without_a_paper_table(tmp_path):
    raw = {**SUITE, "name": "fake_plain"}
    raw.pop("paper")
    raw.pop("report")
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    suite = load_suite(path)
    write_fake_runs(tmp_path / "out", suite)
    suite_dir = store.suite_dir(tmp_path / "out", suite.name)
    report.write_suite_report(suite_dir, suite=suite, figures=False)
    tex = (suite_dir / "table.tex").read_text()
    assert "(paper)" not in tex and not (suite_dir / "table1.tex").exists()
    assert tex.count(r"\multicolumn") == 2  # one header row per setting
    md = (suite_dir / "report.md").read_text()
    assert "names no paper table" in md


# -- agreement, fidelity, figures ------------------------------------------------------------------------

EXPECTED_AGREEMENT = {
    # (setting, metric, baseline): verdict — from BASE against the paper's Table 1, 3 paired seeds unless noted
    ("euclidean_1024x32", "train_usage_batch", "ste"): "disagree",  # paper 97 < 100; ours 80 > 50, CI > 0
    ("euclidean_1024x32", "train_rec_loss", "ste"): "agree",  # paper 0.116 > 0.107; ours 0.08 > 0.07, CI > 0
    ("euclidean_1024x32", "train_quant_error", "ste"): "agree",
    ("euclidean_1024x32", "val_rec_loss", "ste"): "disagree",  # paper 0.122 > 0.115; ours 0.09 < 0.11
    ("euclidean_1024x32", "r_fid", "ste"): "not measured",
    ("cosine_8192x3", "train_usage_batch", "ste"): "agree",
    ("cosine_8192x3", "val_rec_loss", "ste"): "agree",
    ("cosine_8192x3", "r_is", "ste"): "not measured",
    ("cosine_8192x3", "train_usage_batch", "hessian"): "not measured",  # not run
    ("cosine_8192x3", "train_usage_batch", "exact"): "tie in paper",  # 38% vs 38%
    # exact finished seed 0 only: the means point the paper's way (or not), but one pair decides nothing
    ("cosine_8192x3", "train_rec_loss", "exact"): "inconclusive",
    ("cosine_8192x3", "train_quant_error", "exact"): "inconclusive",
    ("euclidean_8192x3", "val_rec_loss", "gumbel"): "not measured",  # setting not run
}


def test_agreement_with_the_paper(fake):
    verdicts = report.agreement(fake["tables"], fake["suite"])
    by_key = {(v.claim.setting, v.claim.metric, v.claim.baseline): v for v in verdicts}
    assert len(verdicts) == len(report.claims("table1"))
    for key, outcome in EXPECTED_AGREEMENT.items():
        assert by_key[key].outcome == outcome, key
    assert by_key[("cosine_8192x3", "train_rec_loss", "exact")].why == "1 paired seed, 2 needed"
    md = fake["md"]
    section = md.split("## Agreement with the paper")[1]
    euclid = paper_numbers.TABLES["table1"]["settings"]["euclidean_1024x32"]["label"]
    rot_values = values_of("euclidean", "rotation", "train_usage_batch")
    ste_values = values_of("euclidean", "ste", "train_usage_batch")
    rot = report.fmt_value(np.mean(list(rot_values.values())), "train_usage_batch")
    ste = report.fmt_value(np.mean(list(ste_values.values())), "train_usage_batch")
    assert (rot, ste) == ("80.3", "50.0")
    differences = np.array([rot_values[s] - ste_values[s] for s in SEEDS])
    low, high = stats.t.interval(0.95, 2, loc=differences.mean(), scale=stats.sem(differences))
    assert low > 0  # the clear effect the verdict rests on
    interval = report.fmt_interval(differences.mean(), low, high, "train_usage_batch")
    assert (f"| {euclid} | Usage (%) ↑ | rotation vs ste | 97 vs 100 (worse) | {rot} vs {ste} | {interval} | "
            f"3 (0, 1, 2) | disagree |") in section
    assert "| disagree |" in section and "| agree |" in section and "| tie in paper |" in section
    assert "| 1 (0) | inconclusive (1 paired seed, 2 needed) |" in section
    assert "not measured (r_fid not recorded)" in section
    assert "Not run in these results: Euclidean lookup, latent 64×64×3, K = 8192" in section
    counts = {o: sum(v.outcome == o for v in verdicts) for o in ("agree", "disagree", "inconclusive",
                                                                  "not measured", "tie in paper")}
    assert (f"Summary: {counts['agree']} agree, {counts['disagree']} disagree, {counts['inconclusive']} "
            f"inconclusive ({counts['not measured']} not measured, {counts['tie in paper']} tie in paper).") in section
    assert f"Agreement with the paper: {report.counts_line(verdicts)}" in fake["result"]["summary"]


def test_fidelity_not_computed_note(fake):
    md = fake["md"]
    assert "## Reconstruction fidelity" in md
    assert f"{FIDELITY_NOTE} (16 of 16 finished runs)." in md
    df = store.load_results(fake["dir"])
    assert "r_fid" not in df.columns
    for line in fake["tex"].splitlines():  # r-FID / r-IS cells of our rows are empty, never a number
        if " & " in line and "(paper)" not in line and not line.startswith(("Approach", " & ")):
            assert line.split(" & ")[-2:] == ["---", r"--- \\"]
        elif line.startswith(" & "):  # the interval row under ours: nothing under r-FID / r-IS
            assert line.split(" & ")[-2:] == ["", r" \\"]


def test_fidelity_off_note(tmp_path):
    raw = {**SUITE, "name": "fake_off", "base": {**SUITE["base"], "metrics": {"fidelity": False}}}
    raw.pop("report")
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    suite = load_suite(path)
    write_fake_runs(tmp_path / "out", suite)
    for record_path in (tmp_path / "out").glob("**/record.json"):  # records without any fidelity note
        record = store.read_json(record_path)
        record.pop("notes", None)
        store.write_json(record_path, record)
    suite_dir = store.suite_dir(tmp_path / "out", suite.name)
    report.write_suite_report(suite_dir, suite=suite, figures=False)
    assert "not computed: metrics.fidelity is off for these runs" in (suite_dir / "report.md").read_text()


def test_report_md_sections_and_figures(fake):
    md = fake["md"]
    for heading in ("# Report: fake_table1", "## What ran", "## Tables", "## Figures", "## Agreement with the paper",
                    "## Metric definitions"):
        assert heading in md
    assert "- Runs: 18 (error: 2, finished: 16)" in md
    assert "- Profile: cpu: 18" in md and "0123456789ab" in md and "RuntimeError: boom" in md
    for stem in ("training_curves", "validation_curves", "final_metrics"):
        assert (fake["dir"] / f"{stem}.png").exists() and (fake["dir"] / f"{stem}.pdf").exists()
        assert f"![{stem}]({stem}.png)" in md
    assert "not drawn" not in md  # push_pull has no synthetic runs here: nothing to draw, nothing to report
    assert ("- Training metrics (train_*): end-of-training values, the mean of the values logged over steps 3-4 "
            "of 5 (`training.usage_window`; null: the last 10% of the run)") in md
    assert md.count("Training metrics are end-of-training values (the window is under What ran).") == 1


def test_an_unknown_figure_name_is_reported_not_raised(fake):
    """Suites cannot name one (refused at load); a direct call still reports it instead of raising."""
    paths, messages = report.extra_figures(fake["dir"], pd.DataFrame(), ["no_such_figure"])
    assert paths == [] and any("'no_such_figure' not drawn" in m for m in messages)


def test_missing_figures_module_is_reported(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "harness.figures", None)  # import raises ImportError
    paths, messages = report.extra_figures(fake["dir"], store.load_results(fake["dir"]), ["anything"])
    assert paths == [] and "harness.figures could not be imported" in messages[0]


# -- determinism and make-report -------------------------------------------------------------------------

def _generated(suite_dir: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(suite_dir.iterdir()) if p.is_file()}


def test_two_generations_are_byte_identical(fake):
    before = _generated(fake["dir"])
    report.write_suite_report(fake["dir"], suite=fake["suite"])
    assert _generated(fake["dir"]) == before
    assert {"report.md", "table1.tex", "results.csv", "training_curves.png", "final_metrics.pdf"} <= set(before)


def test_make_report_regenerates_without_touching_records(fake, monkeypatch, capsys):
    records = sorted(fake["dir"].glob("runs/*/*"))
    snapshot = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in records}
    expected = _generated(fake["dir"])
    for name in expected:
        (fake["dir"] / name).unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("make-report must not train")

    monkeypatch.setattr(runner, "train_run", no_training)
    assert make_report_main([str(fake["path"]), "--out", str(fake["out"])]) == 0
    assert "== fake_table1" in capsys.readouterr().out
    assert _generated(fake["dir"]) == expected
    for path, (mtime, payload) in snapshot.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == payload, path


# -- sections (A.8 ratio) --------------------------------------------------------------------------------

def test_section_ratio_agreement(tmp_path):
    raw = {"name": "fake_a8", "seeds": [0, 1], "default_profile": "cpu",
           "base": {"model": {"family": "vqvae", "preset": "cpu"}, "data": {"name": "natural_patches"},
                    "training": {"steps": 5}},
           "grid": {"estimator.name": ["reflection", "rotation"]}, "profiles": {"cpu": {}},
           "paper": {"section": "A.8"}, "report": {"baseline": "rotation"}}
    path = tmp_path / "a8.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    suite = load_suite(path)
    for spec in suite.runs:
        value = (0.2 if spec.config.estimator.name == "reflection" else 0.1) + 0.01 * spec.config.seed
        store.write_json(store.run_dir(tmp_path / "out", spec.suite, spec.run_id) / store.RECORD,
                         {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": "cpu",
                          "config": spec.config.resolved, "status": "finished", "metrics": {"val_rec_loss": value}})
    suite_dir = store.suite_dir(tmp_path / "out", suite.name)
    report.write_suite_report(suite_dir, suite=suite, figures=False)
    df = store.load_results(suite_dir)
    verdicts = report.agreement(report.build_tables(df, suite), suite)
    vqvae = next(v for v in verdicts if v.claim.setting == "vqvae_euclidean_8192x3")
    # rotation − reflection = −0.1 for both seeds: an interval of zero width below zero, the paper's direction
    assert vqvae.outcome == "agree" and vqvae.ours_ratio == pytest.approx(0.205 / 0.105)
    assert vqvae.difference.seeds == (0, 1) and vqvae.difference.high == pytest.approx(-0.1)
    assert next(v for v in verdicts if v.claim.setting == "vqgan").outcome == "not measured"
    md = (suite_dir / "report.md").read_text()
    assert "reflection ≈ 2× rotation (after 15 epochs)" in md and "reflection = 1.95× rotation" in md
    assert (suite_dir / "table.tex").exists()


# -- the paper suites ------------------------------------------------------------------------------------

PAPER_SUITES = ["table1_vqvae", "table2_vqgan", "table3_ldm", "table4_vit_vqgan", "table5_video", "appendix_a7",
                "appendix_a8", "appendix_a9"]


@pytest.mark.parametrize("profile", ["cpu", "paper"])
@pytest.mark.parametrize("name", PAPER_SUITES)
def test_paper_suite_loads_and_maps_onto_the_paper(name, profile, tmp_path):
    families = {"vqgan", "vit_vqgan", "timesformer_vqgan"}
    if not families <= set(models.family_names()):
        pytest.skip("the GAN families are not registered")
    suite = load_suite(SUITES_DIR / f"{name}.yaml", profile=profile, check_data=False)
    assert suite.runs and all(s.profile == profile for s in suite.runs)
    if profile == "cpu":
        assert all(s.config.resolved["model"]["preset"] == "cpu" for s in suite.runs)
        assert all(s.config.resolved["training"]["steps"] <= 300 for s in suite.runs)
    else:
        assert all(s.config.resolved["model"]["preset"] != "cpu" for s in suite.runs)
        for spec in suite.runs:  # the paper profile runs the paper presets unchanged
            preset = models.get_family(spec.config.model.family).presets[spec.config.model.preset]
            assert {k: spec.config.resolved["model"][k] for k in preset["model"]} == preset["model"], name
    for spec in suite.runs:  # fake records: every run must land in a paper setting
        store.write_json(store.run_dir(tmp_path, spec.suite, spec.run_id) / store.RECORD,
                         {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": profile,
                          "config": spec.config.resolved, "status": "finished", "metrics": {"val_rec_loss": 0.1}})
    tables = report.build_tables(store.load_results(store.suite_dir(tmp_path, suite.name)), suite)
    blocks = [b for t in tables for b in t.blocks]
    named = as_list(suite.paper.get("table")) + as_list(suite.paper.get("section"))
    assert named and all(n in paper_numbers.TABLES or n in paper_numbers.SECTIONS for n in named)
    if name != "appendix_a7":  # A.7 has no paper settings
        assert all(b.ref is not None for b in blocks), [b.key for b in blocks if b.ref is None]
    if profile == "paper":
        wanted = {(t, s) for t in named if t in paper_numbers.TABLES for s in paper_numbers.TABLES[t]["settings"]}
        assert wanted <= {(b.ref, b.setting) for b in blocks}
    assert len({(b.ref, b.setting) for b in blocks if b.ref}) == len([b for b in blocks if b.ref])
