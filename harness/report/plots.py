"""The report's figures, PNG and PDF through one helper (`save_figure`): training and validation curves
(mean over seeds per step with a min–max band), bar charts of the final metrics with 95% CI error bars, and
the figures a suite lists under `report: {figures: [...]}` (harness.figures.FIGURES)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from .. import store
from .formatting import scale
from .metrics import metric
from .settings import approach_sort_key
from .tables import Block, Table

TRAIN_PANELS = [("rec_loss", "reconstruction loss (train)"), ("usage_batch", "codebook usage (batch)"),
                ("quant_error", "quantization error (train)")]
VAL_PANELS = [("val_rec_loss", "validation rec. loss (MSE)"), ("val_loss", "validation loss (L_rec)"),
              ("val_usage", "codebook usage (val set)")]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def import_dependencies() -> None:
    """Import what writing a report imports on first use (matplotlib with the Agg backend, scipy.stats: most
    of a second), e.g. in a background thread of a process that waits for its workers (harness/cli.py)."""
    pyplot()
    from scipy import stats  # noqa: F401


def save_figure(fig, directory: str | Path, stem: str, *, dpi: int = 120, tight: bool = False) -> list[Path]:
    """Write `fig` as `<stem>.png` and `<stem>.pdf` into `directory` without timestamps or software versions
    in their metadata (so regenerated files are byte-identical), close it, and return the two paths.
    `tight` crops the figure to its drawn content (bbox_inches="tight")."""
    paths = [Path(directory) / f"{stem}.png", Path(directory) / f"{stem}.pdf"]
    bbox = {"bbox_inches": "tight"} if tight else {}
    fig.savefig(paths[0], dpi=dpi, metadata={"Software": None}, **bbox)
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None}, **bbox)
    pyplot().close(fig)
    return paths


def load_histories(suite_directory: Path, run_ids) -> pd.DataFrame:
    """The history.csv rows of the runs, with a run_id column (unreadable histories are skipped)."""
    frames = []
    for run_id in sorted(run_ids):
        path = Path(suite_directory) / "runs" / run_id / store.HISTORY
        if path.exists():
            try:
                history = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                continue
            history["run_id"] = run_id
            frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _colors(tables: list[Table]) -> dict:
    approaches = sorted({r.approach for t in tables for b in t.blocks for r in b.rows if r.kind == "ours"},
                        key=approach_sort_key)
    cycle = pyplot().get_cmap("tab10" if len(approaches) <= 10 else "tab20").colors  # no colour twice up to 20
    return {a: cycle[i % len(cycle)] for i, a in enumerate(approaches)}


def _all_blocks(tables: list[Table]) -> list[tuple[Table, Block]]:
    return [(t, b) for t in tables for b in t.blocks]


def plot_curves(suite_directory: Path, tables: list[Table], histories: pd.DataFrame, kind: str,
                panels: list[tuple[str, str]], stem: str) -> list[Path]:
    """Per block (rows) and panel (columns): mean over seeds per step, one line per approach, min–max band."""
    if histories.empty or "kind" not in histories.columns:
        return []
    part = histories[histories["kind"] == kind]
    panels = [p for p in panels if p[0] in part.columns and part[p[0]].notna().any()]
    pairs = _all_blocks(tables)
    if part.empty or not panels or not pairs:
        return []
    if kind == "eval" and part.groupby("run_id")["step"].nunique().max() < 2:
        return []
    plt = pyplot()
    colors = _colors(tables)
    fig, axes = plt.subplots(len(pairs), len(panels), figsize=(4.2 * len(panels), 3.0 * len(pairs)),
                             squeeze=False)
    for i, (_, block) in enumerate(pairs):
        approach_of_run = dict(zip(block.runs["run_id"], block.runs["_approach"]))
        rows = part[part["run_id"].isin(approach_of_run)]
        rows = rows.assign(_approach=rows["run_id"].map(approach_of_run))
        for j, (column, title) in enumerate(panels):
            ax = axes[i][j]
            positive = True
            for approach in sorted(rows["_approach"].unique(), key=approach_sort_key):
                data = rows[rows["_approach"] == approach].dropna(subset=[column])
                if data.empty:
                    continue
                spread = data.groupby("step")[column].agg(["mean", "min", "max"]).sort_index()
                positive = positive and bool((spread["min"] > 0).all())
                ax.plot(spread.index, spread["mean"], label=approach, color=colors.get(approach), lw=1.2)
                ax.fill_between(spread.index, spread["min"], spread["max"], alpha=0.2, color=colors.get(approach),
                                lw=0)
            ax.set_title(f"{title}\n{block.short}", fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            if positive and "usage" not in column and ax.lines:
                ax.set_yscale("log")
            if not ax.lines:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
            elif j == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, suite_directory, stem)


def plot_final_metrics(suite_directory: Path, tables: list[Table]) -> list[Path]:
    """Bar charts of the final metrics per block: mean over seeds with the 95% CI as error bars."""
    pairs = [(t, b) for t, b in _all_blocks(tables)
             if any(r.kind == "ours" and r.cells[m].n > 0 for r in b.rows for m in t.columns)]
    if not pairs:
        return []
    width = max(len([m for m in t.columns if any(r.kind == "ours" and r.cells[m].n for r in b.rows)])
                for t, b in pairs)
    plt = pyplot()
    colors = _colors(tables)
    fig, axes = plt.subplots(len(pairs), width, figsize=(2.6 * width, 2.6 * len(pairs)), squeeze=False)
    for i, (table, block) in enumerate(pairs):
        ours = [r for r in block.rows if r.kind == "ours"]
        names = [m for m in table.columns if any(r.cells[m].n for r in ours)]
        for j in range(width):
            ax = axes[i][j]
            if j >= len(names):
                ax.axis("off")
                continue
            name = names[j]
            rows = [r for r in ours if r.cells[name].n]
            means = [scale(name, r.cells[name].mean) for r in rows]
            errors = [0.0 if r.cells[name].half is None else scale(name, r.cells[name].half) for r in rows]
            ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color=[colors.get(r.approach) for r in rows])
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels([r.approach for r in rows], rotation=45, ha="right", fontsize=6)
            ax.set_title(f"{metric(name).label}\n{block.short}", fontsize=7)
            ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    return save_figure(fig, suite_directory, "final_metrics")


def extra_figures(suite_directory: Path, df: pd.DataFrame, names: list[str]) -> tuple[list[Path], list[str]]:
    """harness.figures.FIGURES[name](suite_dir, df) for each name; problems come back as messages."""
    paths, messages = [], []
    if not names:
        return paths, messages
    try:
        module = importlib.import_module("harness.figures")
    except Exception as error:  # noqa: BLE001 — a missing or broken module is reported, not raised
        return paths, [f"figures {', '.join(names)} not drawn: harness.figures could not be imported "
                       f"({type(error).__name__}: {error})"]
    registry = getattr(module, "FIGURES", {}) or {}
    for name in names:
        function = registry.get(name)
        if function is None:
            available = ", ".join(sorted(registry)) or "(none)"
            messages.append(f"figure {name!r} not drawn: harness.figures.FIGURES has no such entry "
                            f"(available: {available})")
            continue
        try:
            made = function(Path(suite_directory), df) or []
        except Exception as error:  # noqa: BLE001
            messages.append(f"figure {name!r} failed: {type(error).__name__}: {error}")
            continue
        paths.extend(Path(p) for p in made)
    return paths, messages
