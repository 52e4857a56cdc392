"""From records to what a paper needs: a summary table, results.csv, a LaTeX table and training curves.

`write_suite_report(suite_dir, ...)` is what run-suite calls at the end and what `make-report` calls on
existing results; it never trains.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import store

#: Metric columns shown in tables, in order, with the better direction (↑/↓) and a LaTeX header.
TABLE_METRICS = [
    ("train_usage_batch", "up", "Usage (batch)"),
    ("val_usage", "up", "Usage (val)"),
    ("train_rec_loss", "down", "Train rec."),
    ("train_quant_error", "down", "Quant. err."),
    ("val_rec_loss", "down", "Val rec."),
    ("val_psnr", "up", "PSNR"),
    ("r_fid", "down", "r-FID"),
    ("r_is", "up", "r-IS"),
    ("r_fvd", "down", "r-FVD"),
    ("grad_cosine_exact", "up", "cos(∇, exact)"),
]


def varying_label_columns(df: pd.DataFrame) -> list[str]:
    """Label columns (grid/zip keys) that take more than one value, seeds excluded."""
    columns = [c for c in df.columns if c.startswith("label.") and c != "label.seed"]
    return [c for c in columns if df[c].astype(str).nunique() > 1] or [c for c in columns][:1]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every table metric, one row per combination of the varying labels."""
    finished = df[df["status"] == store.FINISHED]
    groups = varying_label_columns(df) or ["config.estimator.name"]
    metrics = [m for m, _, _ in TABLE_METRICS if m in finished.columns and finished[m].notna().any()]
    if finished.empty or not metrics:
        return pd.DataFrame()
    grouped = finished.groupby(groups, sort=False, dropna=False)[metrics]
    summary = grouped.agg(["mean", "std", "count"])
    return summary


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a plain-text table: mean ± std (n)."""
    if summary.empty:
        return "(no finished runs)"
    metrics = list(dict.fromkeys(summary.columns.get_level_values(0)))
    rows = []
    for index, row in summary.iterrows():
        name = ", ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        cells = [name]
        for metric in metrics:
            mean, std, n = row[(metric, "mean")], row[(metric, "std")], row[(metric, "count")]
            cells.append(f"{_fmt(mean)} ± {_fmt(std if n > 1 else 0.0)}")
        rows.append(cells)
    header = ["run"] + metrics
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    value = float(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"


def latex_table(summary: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table: mean ± std over seeds, best mean in bold per column (direction from TABLE_METRICS)."""
    directions = {m: d for m, d, _ in TABLE_METRICS}
    headers = {m: h for m, _, h in TABLE_METRICS}
    metrics = list(dict.fromkeys(summary.columns.get_level_values(0)))
    best = {}
    for metric in metrics:
        means = summary[(metric, "mean")]
        if means.notna().any():
            best[metric] = means.idxmax() if directions[metric] == "up" else means.idxmin()
    arrow = {"up": r"($\uparrow$)", "down": r"($\downarrow$)"}
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(metrics) + "}",
             r"\toprule",
             "Run & " + " & ".join(f"{_latex_escape(headers[m])} {arrow[directions[m]]}" for m in metrics) + r" \\",
             r"\midrule"]
    for index, row in summary.iterrows():
        name = ", ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        cells = []
        for metric in metrics:
            mean, std, n = row[(metric, "mean")], row[(metric, "std")], row[(metric, "count")]
            text = "—" if pd.isna(mean) else f"{_fmt(mean)} $\\pm$ {_fmt(std if n > 1 else 0.0)}"
            cells.append(rf"\textbf{{{text}}}" if best.get(metric) == index else text)
        lines.append(_latex_escape(name) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_latex_escape(caption)}}}", rf"\label{{{label}}}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    text = str(text).replace("\\", r"\textbackslash{}")
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text.replace("∇", r"$\nabla$").replace("±", r"$\pm$")


def load_histories(suite_directory: Path, df: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for _, row in df.iterrows():
        path = Path(suite_directory) / "runs" / row["run_id"] / store.HISTORY
        if path.exists():
            history = pd.read_csv(path)
            history["run_id"] = row["run_id"]
            frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_training_curves(suite_directory: Path, df: pd.DataFrame, stem: str = "training_curves") -> list[Path]:
    """Loss, codebook usage and quantization error per step, one line per label group, seed bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = load_histories(suite_directory, df)
    if histories.empty:
        return []
    train = histories[histories["kind"] == "train"]
    groups = varying_label_columns(df) or ["config.estimator.name"]
    keyed = df.set_index("run_id")[groups].astype(str).agg(", ".join, axis=1)
    train = train.assign(group=train["run_id"].map(keyed))
    panels = [("rec_loss", "reconstruction loss"), ("usage_batch", "codebook usage (batch)"),
              ("quant_error", "quantization error")]
    panels = [p for p in panels if p[0] in train.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        for name, part in train.groupby("group", sort=False):
            stats = part.groupby("step")[column].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], label=name)
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        if column != "usage_batch":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    paths = [Path(suite_directory) / f"{stem}.png", Path(suite_directory) / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def write_suite_report(suite_directory: str | Path, suite=None) -> dict:
    """Write results.csv, table.tex and the training-curve plots for one suite's results; return what was
    written and the text summary."""
    suite_directory = Path(suite_directory)
    df = store.load_results(suite_directory)
    if df.empty:
        return {"summary": "(no runs recorded)", "files": []}
    store.atomic_write_text(suite_directory / "results.csv", df.to_csv(index=False))
    files = [suite_directory / "results.csv"]
    summary = summarize(df)
    text = format_summary(summary)
    if not summary.empty:
        name = suite.name if suite is not None else suite_directory.name
        store.atomic_write_text(suite_directory / "table.tex",
                                latex_table(summary, f"{name}: mean ± std over seeds", f"tab:{name}"))
        files.append(suite_directory / "table.tex")
        files += plot_training_curves(suite_directory, df)
    return {"summary": text, "files": files}
