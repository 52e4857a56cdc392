"""From records to what a paper needs: tables shaped like the paper's, LaTeX, plots and report.md.

`write_suite_report(suite_dir, suite=None)` is what run-suite calls at the end and what `make-report` calls
on existing results; it never trains. Given the loaded suite it reports exactly the suite's runs (by run id);
the folder's other records (another configuration of the suite) are named in report.md, never averaged in,
and unreadable record files are named and skipped. It writes, into the suite's results folder:

- `results.csv`: one row per reported run (harness.store.load_results' columns);
- one booktabs LaTeX file per table: `<paper table id>.tex` (e.g. `table1.tex`) for the runs that stand for
  a paper table's settings (the suite's `paper: {table: ...}`), `table.tex` for the other runs; each fits
  the ICLR single-column text width, names the approaches as the paper does (names.py) and has a PNG
  preview beside it, compiled with pdflatex (`<stem>.png`, preview.py);
- `training_curves`, `validation_curves` (when runs evaluated more than once) and `final_metrics` plots,
  PNG and PDF, plus any figures the suite lists under `report: {figures: [...]}` (harness.figures);
- `reconstructions` (PNG and PDF): per block, the same validation images reconstructed by each approach's
  first seed (reconstructions.py, from the runs' reconstructions.png);
- `report.md`: what ran, the tables in markdown with paired tests, the figures, the fidelity note, and a
  verdict per claim of the paper's numbers (agree / disagree / inconclusive, from the 95% interval of the
  paired difference over seeds: verdicts.py);
- `report.html`: report.md as one self-contained page, with the LaTeX tables and the suite's configuration
  (html.py).

Table layout: one block per setting (the values that vary across the suite other than the estimator, the
seed and the suite's `report.approach_keys`), a header row naming the setting (and the paper setting it stands
for; in LaTeX in words, the run configuration in the caption), one row per approach (estimator + its
parameters, then after " + " the approach keys' values that differ from the family's defaults, e.g.
"ste + FSQ": settings.py, names.py). Cells are the mean over seeds ± the half-width of the 95% t-interval
(scipy.stats.t.interval; with one seed, the mean alone). Each approach is compared with the baseline
(`ste` unless the suite says `report: {baseline: ...}`) by a paired t-test over seeds (scipy.stats.ttest_rel);
p < 0.05 is marked † (p-values are listed in report.md). The best mean per block and metric is bold. Where
the suite names a paper table, the paper's rows are printed after ours, marked "(paper)".

Every output is a function of the records and the suite file alone: no timestamps, fixed ordering and fixed
number formatting, so regenerating gives byte-identical files.

Suite keys read here (all optional):
    paper:
      table: table1 | [table6, table7]        # harness.paper_numbers.TABLES ids
      section: A.8 | [A.7, ...]               # harness.paper_numbers.SECTIONS ids
      settings:                               # which of our runs stand for which paper setting
        - {table: table1, setting: euclidean_1024x32, match: {model.lookup: euclidean, model.latent_dim: 32}}
        - {section: A.8, setting: vqgan, match: [{model.family: vqgan}]}   # a list: any rule may match
    report:
      baseline: ste                           # the approach the paired tests compare with
      metrics: [val_rec_loss, ...]            # columns of table.tex (default: the usual metrics measured)
      approach_keys: [model.quantizer, ...]   # model keys of the row (the approach), not of the block
      figures: [himmelblau_panels]            # harness.figures.FIGURES names
      interval: below | beside | caption      # the LaTeX tables' 95% interval (make-report --interval)
      names: paper | registry | both          # the LaTeX tables' approach names (make-report --names)

Modules: metrics (the metrics registry), formatting, stats, loading, settings, tables, markdown, names,
latex, preview, plots (`save_figure`), reconstructions, verdicts, agreement_text, narrative, html, writer.
"""
from __future__ import annotations

from .formatting import fmt_interval, fmt_mean_ci, fmt_p, fmt_paper, fmt_value
from .html import REPORT_HTML, write_html
from .latex import INTERVAL_STYLES, latex_escape, latex_name, latex_number, latex_table
from .loading import LoadedResults, load_results
from .markdown import markdown_pvalues, markdown_table
from .metrics import FIDELITY_METRICS, METRICS, SUITE_TABLE_METRICS, Metric, markdown_metric_table, metric
from .plots import extra_figures, import_dependencies, save_figure
from .stats import PairedDifference, mean_ci, paired_difference, paired_p
from .tables import Block, Cell, Row, Table, build_tables
from .verdicts import Outcome, PaperClaim, Verdict, agreement, claims, counts_line, section_claims
from .writer import write_suite_report

__all__ = [
    "FIDELITY_METRICS", "INTERVAL_STYLES", "METRICS", "SUITE_TABLE_METRICS", "Block", "Cell", "LoadedResults", "Metric", "Outcome",
    "PairedDifference", "PaperClaim", "REPORT_HTML", "Row", "Table", "Verdict", "agreement", "build_tables", "claims",
    "counts_line", "extra_figures", "fmt_interval", "fmt_mean_ci", "fmt_p", "fmt_paper", "fmt_value",
    "import_dependencies", "latex_escape", "latex_name", "latex_number", "latex_table", "load_results", "markdown_metric_table",
    "markdown_pvalues", "markdown_table", "mean_ci", "metric", "paired_difference", "paired_p", "save_figure",
    "section_claims", "write_html", "write_suite_report",
]
