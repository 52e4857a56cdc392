"""`write_suite_report`: results.csv, the LaTeX tables, the plots and report.md of one suite's folder."""
from __future__ import annotations

import logging
from pathlib import Path

from .. import store
from .agreement_text import agreement_lines
from .formatting import as_list
from .html import write_html
from .latex import DEFAULT_INTERVAL, latex_table
from .loading import load_results
from .markdown import markdown_table
from .narrative import definition_lines, fidelity_lines, figure_lines, table_lines, what_ran
from .preview import write_preview
from .reconstructions import plot_reconstructions, reconstruction_lines
from .plots import TRAIN_PANELS, VAL_PANELS, extra_figures, load_histories, plot_curves, plot_final_metrics
from .settings import annotate, approach_keys_of
from .tables import build_tables
from .verdicts import agreement, counts_line

log = logging.getLogger(__name__)


def write_suite_report(suite_directory: str | Path, suite=None, *, figures: bool = True, interval: str | None = None,
                       names: str | None = None) -> dict:
    """Write results.csv, the LaTeX tables (with their PNG previews), the plots and report.md for one suite's
    results; return the text summary and the files written. With `suite` (a harness.suite.Suite) exactly its
    runs are reported; without, every record in the folder. `interval` and `names`: the LaTeX tables'
    interval style and approach names (latex.py; default: the suite's `report:` keys, else `below` and
    `paper`). `figures=False` draws no plots and no previews. Never trains; regenerating gives
    byte-identical files."""
    suite_directory = Path(suite_directory)
    options = suite.report if suite is not None else {}
    interval = interval or options.get("interval") or DEFAULT_INTERVAL
    approach_names = names or options.get("names") or "paper"
    loaded = load_results(suite_directory, suite)
    df = loaded.frame
    suite_name = suite.name if suite is not None else suite_directory.name
    if df.empty and not loaded.outside and not loaded.damaged:
        return {"summary": "(no runs recorded)", "files": []}
    files = []
    if df.empty:  # a results.csv of other runs would contradict report.md
        (suite_directory / "results.csv").unlink(missing_ok=True)
    else:
        store.atomic_write_text(suite_directory / "results.csv", df.to_csv(index=False))
        files.append(suite_directory / "results.csv")
    tables = [t for t in build_tables(df, suite) if t.has_ours]
    for table in tables:
        path = suite_directory / f"{table.stem}.tex"
        store.atomic_write_text(path, latex_table(table, suite_name, interval=interval, names=approach_names))
        files.append(path)
        if figures:
            preview, problem = write_preview(path)
            files += [preview] if preview else []
            if problem:
                log.warning("%s", problem)

    figure_paths, figure_messages, pictures = [], [], []
    if figures and not df.empty:
        histories = load_histories(suite_directory, df["run_id"])
        figure_paths += plot_curves(suite_directory, tables, histories, "train", TRAIN_PANELS, "training_curves")
        figure_paths += plot_curves(suite_directory, tables, histories, "eval", VAL_PANELS, "validation_curves")
        figure_paths += plot_final_metrics(suite_directory, tables)
        pictures = plot_reconstructions(suite_directory, tables)
        names = [str(n) for n in as_list((suite.report if suite is not None else {}).get("figures"))]
        extra, figure_messages = extra_figures(suite_directory, df, names)
        figure_paths += extra
    files += figure_paths

    verdicts = agreement(tables, suite)
    lines = [f"# Report: {suite_name}", ""]
    lines += what_ran(annotate(df, approach_keys_of(suite)), loaded, suite, suite_name) + [""]
    if not df.empty:
        lines += table_lines(tables)
        lines += figure_lines(suite_directory, figure_paths, figure_messages, figures)
        lines += reconstruction_lines(pictures, figures, images="config.data.name" in df.columns)
        files += pictures
        lines += fidelity_lines(df, loaded.records)
        lines += agreement_lines(verdicts, suite)
        lines += definition_lines(tables)
    text = "\n".join(lines).rstrip("\n") + "\n"
    store.atomic_write_text(suite_directory / "report.md", text)
    files += [suite_directory / "report.md", write_html(suite_directory, text, suite)]

    summary = "\n\n".join(f"{t.title}\n{markdown_table(t)}" for t in tables) or "(no finished runs with table metrics)"
    if df.empty:
        summary = f"(none of the suite's {loaded.expected} runs recorded; see {suite_directory / 'report.md'})"
    if verdicts:
        summary += f"\n\nAgreement with the paper: {counts_line(verdicts)}"
    return {"summary": summary, "files": files}
