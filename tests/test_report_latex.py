"""Every LaTeX table the report writes compiles with pdflatex on a page of the paper's format (ICLR, single
column, 5.5 in text width) without an overfull box: the tables of every paper suite (fake records with every
column measured, in the widest number style), of the committed reference results, in each interval style
that promises to fit; the report writes each table's PNG preview; the approaches carry the paper's names.
pdflatex comes from Debian's texlive packages and pdftoppm from poppler-utils (.ci/run installs them)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from harness import report, store
from harness.report import preview
from harness.report.latex import latex_table
from harness.report.names import approach_labels, paper_name
from harness.suite import load_suite
from test_report import PAPER_SUITES

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
needs_tex = pytest.mark.skipif(bool(preview.missing_tools()),
                               reason=f"needs {', '.join(preview.missing_tools())} (Debian texlive, poppler-utils)")

#: our values, per column: 3 seeds around these, chosen for the widest formats (scientific notation)
VALUES = {"train_usage_batch": 0.512, "val_usage": 0.498, "train_rec_loss": 0.1234, "train_quant_error": 1.234e-3,
          "val_rec_loss": 0.1312, "val_loss": 0.912, "r_fid": 123.4, "r_is": 18.35, "r_fvd": 1234.5,
          "val_psnr": 21.3, "cos_exact": 0.5123}


def _fake_records(suite, directory):
    for index, spec in enumerate(suite.runs):
        noise = 1.0 + 0.1 * ((index * 7) % 5 - 2)
        store.write_json(store.run_dir(directory, spec.suite, spec.run_id) / store.RECORD, {
            "run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "profile": "cpu",
            "config": spec.config.resolved, "status": "finished",
            "metrics": {name: value * noise for name, value in VALUES.items()}})


def _assert_fits(tex: str, where: str, scratch) -> None:
    compiled = preview.compile_table(tex, scratch)
    assert compiled.pdf is not None, f"{where}: {compiled.errors}"
    assert not compiled.overfull, f"{where} does not fit the ICLR text width: {compiled.overfull}"


def _reported_tables(suite, directory, interval: str) -> dict:
    suite_dir = store.suite_dir(directory, suite.name)
    result = report.write_suite_report(suite_dir, suite=suite, figures=False, interval=interval)
    return {p.name: p.read_text() for p in result["files"] if p.suffix == ".tex"}


@needs_tex
@pytest.mark.parametrize("interval", ["below", "caption"])
@pytest.mark.parametrize("name", PAPER_SUITES)
def test_every_paper_table_fits_the_page(name, interval, tmp_path):
    suite = load_suite(name, profile="paper", check_data=False)
    _fake_records(suite, tmp_path / "out")
    tables = _reported_tables(suite, tmp_path / "out", interval)
    assert tables
    for file_name, tex in tables.items():
        scratch = tmp_path / f"tex-{file_name}"
        scratch.mkdir()
        _assert_fits(tex, f"{name}/{file_name} ({interval})", scratch)


@needs_tex
@pytest.mark.parametrize("interval", ["below", "caption", "beside"])
def test_reference_tables_fit_the_page(interval, tmp_path):
    """The committed reference results (README "Reference results"): every table, every style."""
    root = tmp_path / "results"
    count = 0
    for committed in sorted(p for p in REFERENCE.iterdir() if list(p.glob("*.tex"))):
        copy = root / committed.name
        shutil.copytree(committed / "runs", copy / "runs", ignore=shutil.ignore_patterns("*.pt", "*.lock"))
        suite = load_suite(committed.name, profile="cpu")
        for file_name, tex in _reported_tables(suite, root, interval).items():
            scratch = tmp_path / f"tex-{committed.name}-{file_name}"
            scratch.mkdir()
            compiled = preview.compile_table(tex, scratch)
            assert compiled.pdf is not None, compiled.errors
            assert not compiled.overfull, f"{committed.name}/{file_name} ({interval}): {compiled.overfull}"
            count += 1
    assert count >= 4  # quickstart, appendix_a2, appendix_a9 (two tables)


@needs_tex
def test_an_overfull_table_is_caught(tmp_path):
    """The check itself: a table wider than 5.5 in is reported."""
    wide = r"\begin{tabular}{" + "c" * 12 + "}" + " & ".join(["0.123456789"] * 12) + r"\end{tabular}"
    compiled = preview.compile_table(wide, tmp_path)
    assert compiled.pdf is not None and compiled.overfull and "too wide" in compiled.overfull[0]


@needs_tex
def test_the_report_writes_a_png_preview_of_each_table(tmp_path):
    suite = load_suite("table1_vqvae", profile="cpu", check_data=False)
    _fake_records(suite, tmp_path)
    suite_dir = store.suite_dir(tmp_path, suite.name)
    files = report.write_suite_report(suite_dir, suite=suite)["files"]
    png = suite_dir / "table1.png"
    assert png in files
    with Image.open(png) as picture:
        width, height = picture.size
        colors = picture.convert("L").getextrema()
    # cropped to the table: no wider than the text block (5.5 in at the preview's dpi) plus the margins, and a
    # pixel on each side where antialiasing of a glyph at the block's edge touches it
    assert width <= 5.5 * preview.DPI + 2 * preview.MARGIN + 2 and height > 100 and colors[0] < 64 < colors[1]
    before = png.read_bytes()
    report.write_suite_report(suite_dir, suite=suite)
    assert png.read_bytes() == before  # regenerated byte-identically


def test_without_pdflatex_the_report_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(preview.shutil, "which", lambda name: None)
    suite = load_suite("table1_vqvae", profile="cpu", check_data=False)
    _fake_records(suite, tmp_path)
    suite_dir = store.suite_dir(tmp_path, suite.name)
    report.write_suite_report(suite_dir, suite=suite, interval="below")
    assert (suite_dir / "table1.tex").exists() and not (suite_dir / "table1.png").exists()
    assert "LaTeX previews not made: pdflatex, pdftoppm not found" in caplog.text


# -- what the tables say ---------------------------------------------------------------------------------

def test_paper_names_with_the_registry_names_in_the_caption(tmp_path):
    suite = load_suite("appendix_a9", profile="cpu")
    _fake_records(suite, tmp_path)
    tables = report.build_tables(store.load_results(store.suite_dir(tmp_path, suite.name)), suite)
    tex = latex_table(tables[0], suite.name)  # Table 6
    rows = [line.split(" & ")[0] for line in tex.splitlines() if " & " in line and not line.startswith(" & ")]
    assert rows[1:] == [r"$Re + \mathrm{sg}(q - Re)$", r"$Re + \mathrm{sg}(q - Re)$ (paper)",
                        r"$\gamma Re + \mathrm{sg}(q - \gamma Re)$", r"$\lambda Re$", r"$\lambda Re$ (paper)"]
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    assert r"$\lambda Re$: \texttt{rotation}" in caption
    assert r"\texttt{rotation\_gamma (gamma=inverse\_sq\_distance)}" in caption
    # the block header says what the block is in words; the run configuration is in the caption
    header = next(line for line in tex.splitlines() if line.startswith(r"\multicolumn"))
    assert "Euclidean lookup" in header and "model." not in header
    assert r"Our runs: (a) model.channel\_mult=[1, 2], model.family=vqvae" in caption
    registry = latex_table(tables[0], suite.name, names="registry")
    assert r"rotation\_unscaled (paper)" in registry and "Harness estimators" not in registry
    both = latex_table(tables[0], suite.name, names="both")
    assert r"$\lambda Re$ [rotation] &" in both


def test_interval_styles(tmp_path):
    suite = load_suite("appendix_a9", profile="cpu")
    _fake_records(suite, tmp_path)
    table = report.build_tables(store.load_results(store.suite_dir(tmp_path, suite.name)), suite)[0]
    cell = table.blocks[0].rows[0].cells["train_rec_loss"]
    mean, half = report.fmt_mean_ci(cell.mean, cell.half, "train_rec_loss").split(" ± ")
    below = latex_table(table, suite.name, interval="below").splitlines()
    row = next(i for i, line in enumerate(below) if line.startswith("$Re"))
    assert mean in below[row].split(" & ")[2] and "pm" not in below[row] and below[row + 1].split(" & ")[2] == rf"{{\scriptsize $\pm {half}$}}"
    beside = latex_table(table, suite.name, interval="beside")
    assert rf"{mean} \pm {half}" in beside and r"\scriptsize" not in beside
    caption = latex_table(table, suite.name, interval="caption")
    assert r"\pm" not in caption.split(r"\caption")[0] and "Half-widths of the 95\\% t-intervals: " in caption
    with pytest.raises(ValueError, match="choose one of below, beside, caption"):
        latex_table(table, suite.name, interval="under")


def test_approach_labels():
    assert paper_name("rotation") == "Rotation Trick" and paper_name("rotation", "table6") == "λRe"
    assert paper_name("rotation_through_r") == "rotation_through_r"  # not named by the paper
    labels = approach_labels(["gumbel (tau=0.5)", "gumbel (tau=1)", "ste"], "table1")
    assert labels == {"gumbel (tau=0.5)": "Gumbel (tau=0.5)", "gumbel (tau=1)": "Gumbel (tau=1)", "ste": "STE"}
    with pytest.raises(ValueError, match="choose one of paper, registry, both"):
        approach_labels(["ste"], None, "nice")


def test_make_report_options_choose_the_style(tmp_path, capsys):
    import yaml

    from harness.cli import make_report_main
    from test_report import SUITE, write_fake_runs

    path = tmp_path / "fake_table1.yaml"
    path.write_text(yaml.safe_dump({**SUITE, "report": {"interval": "beside"}}, sort_keys=False))
    write_fake_runs(tmp_path / "out", load_suite(path))
    tex = tmp_path / "out" / "fake_table1" / "table1.tex"
    assert make_report_main([str(path), "--out", str(tmp_path / "out")]) == 0
    beside = r"mean $\pm$ half-width of the 95\% t-interval over seeds"  # the caption of the beside style
    assert beside in tex.read_text() and r"\texttt{rotation}" in tex.read_text()  # the suite's style
    assert make_report_main([str(path), "--out", str(tmp_path / "out"), "--interval", "caption",
                             "--names", "registry"]) == 0
    text = tex.read_text()
    assert "Half-widths of the 95\\% t-intervals" in text and beside not in text
    assert "\nrotation & " in text and "Harness estimators" not in text
    assert (tmp_path / "out" / "fake_table1" / "report.html").exists()
