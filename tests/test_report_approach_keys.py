"""`report.approach_keys`: model options (the quantizer, its reparameterization, dead-code replacement) that
belong to a table's row instead of its block, so that every method of a family, the codebook-free FSQ and LFQ
included, gets a paired t-test against plain `ste` of that family (issue 18: a report that "says, with
significance, where each method stands"). On fake records with known values (no training): the rows and
their names, the p-values (scipy.stats.ttest_rel against the family's plain ste), report.md, the LaTeX names
and caption, the validation of the key, and the beyond_paper suite's cpu profile (both families)."""
from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

from harness import report, store
from harness.report.formatting import fmt_p
from harness.report.latex import latex_table
from harness.report.names import approach_labels, option_name, split_approach, split_variant
from harness.report.settings import approach_sort_key
from harness.suite import SuiteError, load_suite
from helpers_harness import write_yaml
from test_report_latex import _assert_fits, needs_tex

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
SEEDS = (0, 1, 2)
#: (estimator, model.quantizer, model.dead_code_window) of each row, and the row's name in report.md
ROWS = {("ste", "vq", None): "ste", ("rotation", "vq", None): "rotation",
        ("ste", "fsq", None): "ste + FSQ", ("diveq", "vq", 5): "diveq + dead-code replacement (window 5)"}
#: val_rec_loss per family and row, and a per-seed deviation that differs between rows (paired
#: differences are not constant, so each t-test is defined)
BASE = {"vqvae": {"ste": 0.40, "rotation": 0.38, "ste + FSQ": 0.30, "diveq + dead-code replacement (window 5)": 0.35},
        "vqgan": {"ste": 0.20, "rotation": 0.21, "ste + FSQ": 0.25, "diveq + dead-code replacement (window 5)": 0.19}}
DEVIATION = {"ste": (0.01, -0.02, 0.015), "rotation": (-0.01, 0.02, 0.0), "ste + FSQ": (0.02, 0.0, -0.01),
             "diveq + dead-code replacement (window 5)": (0.0, 0.01, -0.02)}
SUITE = {
    "name": "variants",
    "seeds": list(SEEDS),
    "base": {"model": {"preset": "cpu", "codebook_learning": "loss"}, "data": {"name": "natural_patches", "size": 16},
             "training": {"steps": 2}, "metrics": {"diagnostics": False}},
    "zip": [{"model.family": ["vqvae", "vqgan"]},
            {"estimator.name": [row[0] for row in ROWS], "model.quantizer": [row[1] for row in ROWS],
             "model.dead_code_window": [row[2] for row in ROWS]}],
    "report": {"baseline": "ste", "approach_keys": ["model.quantizer", "model.dead_code_window"],
               "metrics": ["val_rec_loss", "val_usage"]},
}


def value(family: str, name: str, seed: int) -> float:
    return BASE[family][name] + DEVIATION[name][seed]


def write_records(out: Path, suite) -> Path:
    """A finished record per run of the suite, val_rec_loss from `value`; the suite's folder."""
    for spec in suite.runs:
        params = spec.config.model.params
        name = ROWS[(spec.config.estimator.name, params.quantizer, params.dead_code_window)]
        family = spec.config.model.family
        store.write_json(store.run_dir(out, spec.suite, spec.run_id) / store.RECORD, {
            "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": None,
            "config": spec.config.resolved, "status": "finished",
            "metrics": {"val_rec_loss": value(family, name, spec.config.seed), "val_usage": 0.5}})
    return store.suite_dir(out, suite.name)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    directory = tmp_path_factory.mktemp("approach_keys")
    suite = load_suite(write_yaml(directory / "variants.yaml", SUITE))
    suite_dir = write_records(directory / "out", suite)
    report.write_suite_report(suite_dir, suite=suite, figures=False)
    tables = report.build_tables(store.load_results(suite_dir), suite)
    return {"suite": suite, "dir": suite_dir, "tables": tables, "md": (suite_dir / "report.md").read_text(),
            "directory": directory}


def test_a_block_per_family_and_a_row_per_estimator_and_variant(variants):
    (table,) = variants["tables"]
    assert [block.key for block in table.blocks] == ["model.family=vqgan", "model.family=vqvae"]
    for block in table.blocks:
        # plain codebook first (in the paper's order), then each variant
        assert [row.approach for row in block.rows] == ["ste", "rotation", "diveq + dead-code replacement (window 5)",
                                                         "ste + FSQ"]


@pytest.mark.parametrize("family", ["vqvae", "vqgan"])
@pytest.mark.parametrize("name", ["rotation", "ste + FSQ", "diveq + dead-code replacement (window 5)"])
def test_each_row_is_paired_with_plain_ste_of_its_family(variants, family, name):
    (table,) = variants["tables"]
    block = next(b for b in table.blocks if b.key == f"model.family={family}")
    cell = block.ours(name).cells["val_rec_loss"]
    expected = stats.ttest_rel([value(family, name, s) for s in SEEDS], [value(family, "ste", s) for s in SEEDS])
    assert cell.pairs == 3 and cell.p == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert block.ours("ste").cells["val_rec_loss"].p is None  # the baseline itself


def test_without_approach_keys_fsq_sits_alone_in_its_block(variants):
    """The layout the key changes: the quantizer options make blocks, and FSQ has no ste to be paired with."""
    raw = {**SUITE, "report": {k: v for k, v in SUITE["report"].items() if k != "approach_keys"}}
    suite = load_suite(write_yaml(variants["directory"] / "blocks.yaml", raw))
    (table,) = report.build_tables(store.load_results(variants["dir"]), suite)
    assert len(table.blocks) == 6  # family × (plain, FSQ, dead-code replacement)
    fsq = next(b for b in table.blocks if b.key == "model.family=vqvae, model.quantizer=fsq")
    assert [row.approach for row in fsq.rows] == ["ste"] and fsq.rows[0].cells["val_rec_loss"].p is None


def test_report_md_names_the_variants_and_lists_their_p_values(variants):
    md, (table,) = variants["md"], variants["tables"]
    assert "- Varying across settings: model.family (one block per setting in the tables)" in md
    assert ("- Varying across approaches: model.quantizer, model.dead_code_window (`report.approach_keys`: a row "
            "names the values that differ from the family's defaults)") in md
    assert "`ste` alone has the defaults." in md
    fsq = next(b for b in table.blocks if b.key == "model.family=vqvae").ours("ste + FSQ").cells["val_rec_loss"]
    assert f"| model.family=vqvae | ste + FSQ | {fmt_p(fsq.p)} (3 pairs) |" in md
    assert "| ste + FSQ (n=3) |" in md and "| diveq + dead-code replacement (window 5) (n=3) |" in md


def test_latex_names_the_estimator_then_its_variant(variants):
    (table,) = variants["tables"]
    tex = latex_table(table, "variants")
    rows = [line.split(" & ")[0] for line in tex.splitlines() if " & " in line and not line.startswith(" & ")]
    assert rows[1:5] == ["STE", "Rotation Trick", "diveq + dead-code replacement (window 5)", "STE + FSQ"]
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    # the registry names are the estimators'; the variants are explained once
    assert r"Harness estimators: STE: \texttt{ste}; Rotation Trick: \texttt{rotation}." in caption
    assert "After +: the model options that differ from the family's defaults (STE alone has the defaults)." in caption
    assert r"ste + FSQ &" in latex_table(table, "variants", names="registry")
    assert r"STE [ste] + FSQ &" in latex_table(table, "variants", names="both")


@needs_tex
def test_the_latex_table_fits_the_page(variants, tmp_path):
    (table,) = variants["tables"]
    _assert_fits(latex_table(table, "variants"), "variants/table.tex", tmp_path)


def test_a_key_that_does_not_vary_names_no_row(tmp_path):
    """Every run with cosine lookup (not the family's default): no row says so, and plain ste is found."""
    keys = ["model.lookup", "model.quantizer", "model.dead_code_window"]
    raw = {**SUITE, "base": {**SUITE["base"], "model": {**SUITE["base"]["model"], "lookup": "cosine"}},
           "report": {**SUITE["report"], "approach_keys": keys}}
    suite = load_suite(write_yaml(tmp_path / "cosine.yaml", raw))
    (table,) = report.build_tables(store.load_results(write_records(tmp_path / "out", suite)), suite)
    assert [row.approach for row in table.blocks[0].rows] == list(ROWS.values())[:2] + [
        "diveq + dead-code replacement (window 5)", "ste + FSQ"]
    assert table.blocks[0].ours("ste + FSQ").cells["val_rec_loss"].p is not None


def test_names_of_the_options():
    assert option_name("model.quantizer", "fsq") == "FSQ" and option_name("model.quantizer", "lfq") == "LFQ"
    assert option_name("model.reparameterization", "affine") == "affine"
    assert option_name("model.reparameterization", "simvq") == "SimVQ"
    assert option_name("model.dead_code_window", "5") == "dead-code replacement (window 5)"
    assert option_name("model.lookup", "cosine") == "lookup cosine"  # any other model key
    assert split_variant("rotation (gamma=one) + affine + SimVQ") == ("rotation (gamma=one)", "affine + SimVQ")
    assert split_approach("rotation_gamma (gamma=one) + SimVQ") == ("rotation_gamma", "gamma=one")
    labels = approach_labels(["ste", "ste + LFQ", "rotation + affine", "gumbel (tau=1) + SimVQ",
                              "gumbel (tau=0.5)"], None)
    assert labels == {"ste": "STE", "ste + LFQ": "STE + LFQ", "rotation + affine": "Rotation Trick + affine",
                      "gumbel (tau=1) + SimVQ": "Gumbel (tau=1) + SimVQ", "gumbel (tau=0.5)": "Gumbel (tau=0.5)"}
    order = sorted(["ste + SimVQ", "rotation", "ste + FSQ", "nsvq", "rotation + affine", "ste + affine", "ste"],
                   key=approach_sort_key)
    assert order == ["ste", "rotation", "nsvq", "ste + affine", "rotation + affine", "ste + FSQ", "ste + SimVQ"]


@pytest.mark.parametrize("keys, message", [
    (["model.quantiser"], r"variants.yaml: report.approach_keys\[0\]: unknown key 'model.quantiser'. "
                          r"Did you mean 'model.quantizer'\?"),
    (["model.quantizer", "estimator.name"], r"report.approach_keys\[1\]: estimator.name: the estimator and its "
                                            r"parameters are always part of the approach"),
    (["model.family"], r"report.approach_keys\[0\]: model.family sets the block"),
    (["seed"], r"report.approach_keys\[0\]: the seed pairs the runs"),
    (["model.quantizer", "model.quantizer"], r"report.approach_keys\[1\]: model.quantizer is listed twice"),
    ("model.quantizer", r"report.approach_keys: expected a list"),
])
def test_a_wrong_approach_key_is_refused_when_the_suite_loads(tmp_path, keys, message):
    raw = {**SUITE, "report": {**SUITE["report"], "approach_keys": keys}}
    with pytest.raises(SuiteError, match=message):
        load_suite(write_yaml(tmp_path / "variants.yaml", raw))


# -- the beyond_paper suite ---------------------------------------------------------------------------------

def test_beyond_paper_cpu_profile_crosses_both_families_and_keeps_the_committed_runs():
    suite = load_suite("beyond_paper", profile="cpu")
    assert len(suite.runs) == 150
    by_family = {f: [r for r in suite.runs if r.config.model.family == f] for f in ("vqvae", "vqgan")}
    assert len(by_family["vqvae"]) == len(by_family["vqgan"]) == 75
    levels = {f: {tuple(r.config.model.params.fsq_levels) for r in runs} for f, runs in by_family.items()}
    assert levels == {"vqvae": {(4, 4, 4, 4)}, "vqgan": {(8, 4, 4)}}
    # the VQ-VAE runs are those of the committed reference result (their configs, hence ids, unchanged)
    committed = {p.name for p in (REFERENCE / "beyond_paper" / "runs").iterdir() if (p / "record.json").exists()}
    assert {r.run_id for r in by_family["vqvae"]} <= committed
    assert suite.report["approach_keys"] == ["model.quantizer", "model.reparameterization", "model.dead_code_window"]


def _beyond_paper_records(out: Path, suite) -> Path:
    """Finished records of every run, values differing per run (a hash of its id), so every paired test is
    defined."""
    for spec in suite.runs:
        noise = int(spec.run_id[:6], 16) / 0xFFFFFF
        store.write_json(store.run_dir(out, spec.suite, spec.run_id) / store.RECORD, {
            "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": "cpu",
            "config": spec.config.resolved, "status": "finished",
            "metrics": {"val_rec_loss": 0.4 + 0.1 * noise, "val_psnr": 11.0 + noise, "val_usage": 0.01 + noise / 2,
                        "val_perplexity": 2.0 + 150 * noise, "train_rec_loss": 0.3 + 0.1 * noise,
                        "train_quant_error": 8.5e-3 + 0.3 * noise}})
    return store.suite_dir(out, suite.name)


def test_beyond_paper_report_tests_every_method_against_ste_of_its_family(tmp_path):
    suite = load_suite("beyond_paper", profile="cpu")
    (table,) = report.build_tables(store.load_results(_beyond_paper_records(tmp_path, suite)), suite)
    assert [block.key for block in table.blocks] == ["model.family=vqgan, model.fsq_levels=[8, 4, 4]",
                                                     "model.family=vqvae, model.fsq_levels=[4, 4, 4, 4]"]
    for block in table.blocks:
        names = [row.approach for row in block.rows]
        assert len(names) == 15 and names[0] == "ste"
        assert {"ste + FSQ", "ste + LFQ", "rotation + affine", "rotation + SimVQ", "sync",
                "diveq + dead-code replacement (window 5)", "sf_diveq + dead-code replacement (window 5)"} <= set(names)
        for row in block.rows[1:]:
            assert all(cell.pairs == 5 and cell.p is not None for cell in row.cells.values()), row.approach


@needs_tex
@pytest.mark.parametrize("interval", ["below", "beside", "caption"])
def test_beyond_paper_table_fits_the_page(tmp_path, interval):
    suite = load_suite("beyond_paper", profile="cpu")
    (table,) = report.build_tables(store.load_results(_beyond_paper_records(tmp_path / "out", suite)), suite)
    _assert_fits(latex_table(table, suite.name, interval=interval), f"beyond_paper ({interval})", tmp_path)
