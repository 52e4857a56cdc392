"""From records to what a paper needs: tables shaped like the paper's, LaTeX, plots and report.md.

`write_suite_report(suite_dir, suite=None)` is what run-suite calls at the end and what `make-report` calls
on existing results; it never trains. It writes, into the suite's results folder:

- `results.csv`: one row per run (harness.store.load_results);
- one booktabs LaTeX file per table: `<paper table id>.tex` (e.g. `table1.tex`) for the runs that stand for
  a paper table's settings (the suite's `paper: {table: ...}`), `table.tex` for the other runs;
- `training_curves`, `validation_curves` (when runs evaluated more than once) and `final_metrics` plots,
  PNG and PDF, plus any figures the suite lists under `report: {figures: [...]}` (harness.figures);
- `report.md`: what ran, the tables in markdown with paired tests, the figures, the fidelity note, and
  whether our numbers agree in direction with the paper's.

Table layout: one block per setting (the values that vary across the suite other than the estimator and the
seed), a header row naming the setting (and the paper setting it stands for), one row per approach
(estimator + its parameters). Cells are the mean over seeds ± the half-width of the 95% t-interval
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
      figures: [himmelblau_panels]            # harness.figures.FIGURES names
"""
from __future__ import annotations

import importlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper_numbers, store

CONFIDENCE = 0.95
ALPHA = 0.05
DEFAULT_BASELINE = "ste"

#: Columns of a suite's own table (not a paper table), in this order, when measured.
SUITE_TABLE_METRICS = ["train_usage_batch", "val_usage", "train_rec_loss", "train_quant_error", "val_rec_loss",
                       "val_loss", "val_psnr", "r_fid", "r_is", "r_fvd", "grad_cosine_exact"]
#: Shown in percent.
PERCENT_METRICS = ("train_usage_batch", "val_usage", "val_usage_batch")
FIDELITY_METRICS = ("r_fid", "r_is", "r_fvd")
HEADERS = {
    "train_usage_batch": "Usage (%)",
    "val_usage": "Usage, val set (%)",
    "train_rec_loss": "Train rec.",
    "train_quant_error": "Quant. err.",
    "val_rec_loss": "Val rec.",
    "val_loss": "Val loss",
    "val_psnr": "PSNR",
    "r_fid": "r-FID",
    "r_is": "r-IS",
    "r_fvd": "r-FVD",
    "grad_cosine_exact": "cos(∇, exact)",
}
#: Row order inside a block (the paper lists the baselines first and the rotation trick last).
APPROACH_ORDER = ["ste", "gumbel", "hessian", "exact", "reflection", "rotation_unscaled", "rotation_gamma",
                  "rotation_through_r", "rotation_radial_removed", "rotation"]
ARROW_MD = {"up": "↑", "down": "↓"}
ARROW_TEX = {"up": r"$\uparrow$", "down": r"$\downarrow$"}
#: Backwards-compatible view of the metrics with their directions and headers.
TABLE_METRICS = [(m, paper_numbers.BETTER.get(m), HEADERS[m]) for m in SUITE_TABLE_METRICS]


# -- small helpers ----------------------------------------------------------------------------------------

def _natural_key(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value) -> str:
    """A config value as text: integral floats without '.0' (pandas upcasts ints next to NaN)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (np.integer,)):
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _same(a, b) -> bool:
    """Config value equality tolerant of pandas' int → float upcasts and JSON-dumped lists."""
    if isinstance(b, (list, dict)):
        b = json.dumps(b)
    if _isnan(a):
        return b is None
    try:
        if isinstance(b, bool) or isinstance(a, (bool, np.bool_)):
            return bool(a) == b and isinstance(b, bool)
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def better_of(metric: str) -> str | None:
    return paper_numbers.BETTER.get(metric)


def header_of(metric: str) -> str:
    return HEADERS.get(metric) or paper_numbers.METRICS.get(metric, {}).get("header") or metric


# -- number formatting (fixed, so that regenerated files are byte-identical) -------------------------------

def _scale(metric: str, value: float) -> float:
    return 100.0 * value if metric in PERCENT_METRICS else value


def _style(value: float) -> tuple[str, int]:
    """('fixed', decimals) or ('sci', 2) for a mean."""
    magnitude = abs(value)
    if magnitude == 0:
        return "fixed", 4
    if magnitude < 1e-2 or magnitude >= 1e5:
        return "sci", 2
    if magnitude < 10:
        return "fixed", 4
    return "fixed", 1


def _fmt_with(value: float, style: tuple[str, int]) -> str:
    value = 0.0 if value == 0 else float(value)  # no "-0.0000"
    kind, digits = style
    text = f"{value:.{digits}e}" if kind == "sci" else f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def fmt_value(value, metric: str = "") -> str:
    """One of our numbers as printed in the tables ('—' when missing)."""
    if _isnan(value):
        return "—"
    value = _scale(metric, float(value))
    style = ("fixed", 1) if metric in PERCENT_METRICS else _style(value)
    return _fmt_with(value, style)


def fmt_mean_ci(mean, half, metric: str = "") -> str:
    """'mean ± half' with the half-width in the mean's style; the mean alone when there is no interval."""
    if _isnan(mean):
        return "—"
    scaled = _scale(metric, float(mean))
    style = ("fixed", 1) if metric in PERCENT_METRICS else _style(scaled)
    text = _fmt_with(scaled, style)
    if half is None or _isnan(half):
        return text
    return f"{text} ± {_fmt_with(_scale(metric, float(half)), style)}"


def fmt_paper(value, metric: str = "") -> str:
    """A paper number as the paper prints it (usage in %, '—' for not reported)."""
    if value is None:
        return "—"
    if metric in PERCENT_METRICS:
        return f"{100.0 * value:.4g}"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:g}"


def fmt_p(p) -> str:
    if p is None or _isnan(p):
        return "n/a"
    if p < 1e-4:
        return "<1e-4"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _fmt_ratio(value) -> str:
    return "—" if _isnan(value) else f"{value:.3g}×"


# -- statistics ------------------------------------------------------------------------------------------

def mean_ci(values) -> tuple[float, float | None, int]:
    """(mean, half-width of the 95% t-interval, n) of the finite values; half-width None when n < 2."""
    from scipy import stats

    data = np.asarray([float(v) for v in values if not _isnan(v)], dtype=float)
    n = len(data)
    if n == 0:
        return float("nan"), None, 0
    mean = float(np.mean(data))
    if n < 2:
        return mean, None, n
    sem = float(stats.sem(data))
    if sem == 0:
        return mean, 0.0, n
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
    return mean, float(high - low) / 2.0, n


def paired_p(a: dict, b: dict) -> tuple[float | None, int]:
    """Paired t-test (scipy.stats.ttest_rel) of two {seed: value} maps over their common seeds:
    (p-value or None, number of pairs). None with fewer than 2 pairs or when the test is undefined."""
    from scipy import stats

    seeds = sorted(s for s in a if s in b and not _isnan(a[s]) and not _isnan(b[s]))
    if len(seeds) < 2:
        return None, len(seeds)
    x = np.asarray([a[s] for s in seeds], dtype=float)
    y = np.asarray([b[s] for s in seeds], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.ttest_rel(x, y).pvalue)
    return (None if math.isnan(p) else p), len(seeds)


# -- the structure of the tables ------------------------------------------------------------------------

@dataclass
class Cell:
    values: dict  # seed -> value (finished runs, finite)
    mean: float
    half: float | None
    n: int
    p: float | None = None  # vs the baseline
    pairs: int = 0
    best: bool = False


@dataclass
class Row:
    approach: str
    kind: str  # "ours" | "paper"
    label: str
    cells: dict = field(default_factory=dict)  # ours: metric -> Cell; paper: metric -> value
    n_runs: int = 0
    n_finished: int = 0


@dataclass
class Block:
    key: str  # the setting descriptor ("" when nothing but the estimator varies)
    runs: pd.DataFrame
    ref: str | None = None  # paper table / section id this block stands for
    setting: str | None = None  # the paper setting id
    rows: list = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.ref is None:
            return self.key or "all runs"
        paper_label = paper_numbers.reference(self.ref)["settings"][self.setting]["label"]
        return f"{paper_label} — ours: {self.key}" if self.key else paper_label

    @property
    def short(self) -> str:
        return self.setting if self.setting else (self.key or "all runs")

    def ours(self, approach: str) -> Row | None:
        for row in self.rows:
            if row.kind == "ours" and row.approach == approach:
                return row
        return None


@dataclass
class Table:
    id: str
    ref: str | None  # the paper table id, None for the suite's own table
    title: str
    columns: list
    blocks: list = field(default_factory=list)
    baseline: str = DEFAULT_BASELINE

    @property
    def stem(self) -> str:
        return self.ref if self.ref else "table"


def approach_of(row: pd.Series, estimator_columns: list[str]) -> str:
    """The estimator name plus its parameters, e.g. 'rotation_gamma (gamma=inverse_sq_distance)'."""
    name = row.get("config.estimator.name")
    name = "—" if _isnan(name) else str(name)
    params = [(c[len("config.estimator."):], row[c]) for c in estimator_columns
              if c != "config.estimator.name" and not _isnan(row[c])]
    if not params:
        return name
    return f"{name} ({', '.join(f'{k}={_plain(v)}' for k, v in sorted(params))})"


def _approach_sort_key(approach: str):
    base = approach.split(" ")[0]
    rank = APPROACH_ORDER.index(base) if base in APPROACH_ORDER else len(APPROACH_ORDER)
    return rank, _natural_key(approach)


def setting_keys(df: pd.DataFrame) -> list[str]:
    """Label keys (grid/zip) that vary across the runs, other than the estimator's and the seed."""
    keys = []
    for column in df.columns:
        if not column.startswith("label.") or column == "label.seed":
            continue
        key = column[len("label."):]
        if key == "estimator" or key.startswith("estimator."):
            continue
        if df[column].map(_plain).nunique(dropna=False) > 1:
            keys.append(key)
    return keys


def _setting_descriptor(row: pd.Series, keys: list[str], columns: list[str]) -> str:
    parts = []
    for key in keys:
        column = f"config.{key}"
        if column in columns:
            if not _isnan(row[column]):
                parts.append(f"{key}={_plain(row[column])}")
            continue
        for sub in sorted(c for c in columns if c.startswith(column + ".")):  # a whole section (data: {...})
            if not _isnan(row[sub]):
                parts.append(f"{sub[len('config.'):]}={_plain(row[sub])}")
    return ", ".join(parts)


def _seed_of(row: pd.Series):
    seed = row.get("label.seed")
    if _isnan(seed):
        seed = row.get("config.seed")
    return None if _isnan(seed) else int(seed)


def _refs(suite) -> tuple[list[str], list[str]]:
    meta = suite.paper if suite is not None else {}
    tables = [t for t in _as_list(meta.get("table")) if t in paper_numbers.TABLES]
    sections = [s for s in _as_list(meta.get("section")) if s in paper_numbers.SECTIONS]
    return tables, sections


def _unknown_refs(suite) -> list[str]:
    meta = suite.paper if suite is not None else {}
    named = _as_list(meta.get("table")) + _as_list(meta.get("section"))
    return [str(r) for r in named if r not in paper_numbers.TABLES and r not in paper_numbers.SECTIONS]


def _setting_rules(suite, refs: list[str]) -> list[tuple[str, str, list[dict]]]:
    """(ref, setting, [match dicts]) in priority order: the suite's own, then paper_numbers' defaults."""
    rules = []
    meta = suite.paper if suite is not None else {}
    for entry in meta.get("settings") or []:
        if not isinstance(entry, dict):
            continue
        ref = entry.get("table") or entry.get("section")
        setting = entry.get("setting")
        if ref not in refs or setting not in paper_numbers.reference(ref)["settings"]:
            continue
        matches = [m for m in _as_list(entry.get("match")) if isinstance(m, dict)]
        rules.append((ref, setting, matches))
    for ref in refs:
        for setting, spec in paper_numbers.reference(ref)["settings"].items():
            rules.append((ref, setting, [spec["match"]]))
    return rules


def _matches(runs: pd.DataFrame, match: dict) -> bool:
    for key, wanted in match.items():
        column = f"config.{key}"
        if column not in runs.columns:
            return False
        if not all(_same(value, wanted) for value in runs[column]):
            return False
    return True


def build_tables(df: pd.DataFrame, suite=None) -> list[Table]:
    """The tables of a suite's results: one per paper table the suite names (with runs), then the suite's own
    table for the other runs. Statistics are over finished runs."""
    if df.empty:
        return []
    report_meta = suite.report if suite is not None else {}
    baseline = str(report_meta.get("baseline") or DEFAULT_BASELINE)
    columns = list(df.columns)
    estimator_columns = sorted(c for c in columns if c.startswith("config.estimator."))
    keys = setting_keys(df)
    df = df.assign(_approach=[approach_of(row, estimator_columns) for _, row in df.iterrows()],
                   _setting=[_setting_descriptor(row, keys, columns) for _, row in df.iterrows()],
                   _seed=[_seed_of(row) for _, row in df.iterrows()])

    table_refs, section_refs = _refs(suite)
    rules = _setting_rules(suite, table_refs + section_refs)
    blocks = []
    for key in sorted(df["_setting"].unique(), key=_natural_key):
        runs = df[df["_setting"] == key]
        block = Block(key=key, runs=runs)
        for ref, setting, matches in rules:
            if any(_matches(runs, m) for m in matches):
                block.ref, block.setting = ref, setting
                break
        blocks.append(block)

    tables = []
    for ref in table_refs:
        spec = paper_numbers.TABLES[ref]
        mine = [b for b in blocks if b.ref == ref]
        if not mine:
            continue
        order = list(spec["settings"])
        mine.sort(key=lambda b: (order.index(b.setting), _natural_key(b.key)))
        tables.append(Table(id=ref, ref=ref, title=spec["title"], columns=list(spec["columns"]), blocks=mine,
                            baseline=baseline))
    rest = [b for b in blocks if b.ref is None or b.ref in section_refs]
    if rest:
        finished = df[df["status"] == store.FINISHED]
        wanted = _as_list(report_meta.get("metrics")) or SUITE_TABLE_METRICS
        metrics = [m for m in wanted if m in finished.columns and finished[m].notna().any()]
        name = suite.name if suite is not None else str(df["suite"].iloc[0])
        titles = [paper_numbers.SECTIONS[s]["title"] for s in section_refs]
        title = name + (f" ({'; '.join(titles)})" if titles else "")
        tables.append(Table(id=name, ref=None, title=title, columns=metrics, blocks=rest, baseline=baseline))

    for table in tables:
        for block in table.blocks:
            _fill_block(table, block)
    return tables


def _fill_block(table: Table, block: Block) -> None:
    runs = block.runs
    finished = runs[runs["status"] == store.FINISHED]
    approaches = sorted(finished["_approach"].unique(), key=_approach_sort_key)
    rows = []
    for approach in approaches:
        mine = runs[runs["_approach"] == approach]
        done = finished[finished["_approach"] == approach]
        row = Row(approach=approach, kind="ours", label=approach, n_runs=len(mine), n_finished=len(done))
        for metric in table.columns:
            row.cells[metric] = metric_cells(block, [approach], metric)[0]
        rows.append(row)
    reference = next((r for r in rows if r.approach == table.baseline), None)
    for row in rows:
        if reference is None or row is reference:
            continue
        for metric, cell in row.cells.items():
            cell.p, cell.pairs = paired_p(cell.values, reference.cells[metric].values)
    for metric in table.columns:
        better = better_of(metric)
        measured = [r for r in rows if r.cells[metric].n > 0]
        if better is None or len(measured) < 2:
            continue
        means = [r.cells[metric].mean for r in measured]
        best = max(means) if better == "up" else min(means)
        for r in measured:
            r.cells[metric].best = r.cells[metric].mean == best
    # the paper's rows, right after ours of the same approach (or where the approach would sort)
    if table.ref is not None and block.setting is not None:
        paper_rows = [r for r in paper_numbers.rows(table.ref, block.setting)]
        for paper_row in paper_rows:
            note = f"; {paper_row['note']}" if paper_row["note"] else ""
            rows.append(Row(approach=paper_row["approach"], kind="paper",
                            label=f"{paper_row['approach']} (paper{note})",
                            cells={m: paper_row["values"].get(m) for m in table.columns}))
        rows.sort(key=lambda r: (_approach_sort_key(r.approach), r.kind != "ours"))
    block.rows = rows


# -- markdown and LaTeX ----------------------------------------------------------------------------------

def _show_block_headers(table: Table) -> bool:
    return len(table.blocks) > 1 or any(b.ref is not None for b in table.blocks)


def _single_approach(table: Table) -> bool:
    """Only one approach in the whole table (e.g. a grid over a model setting): one row per setting."""
    ours = {r.approach for b in table.blocks for r in b.rows if r.kind == "ours"}
    paper = [r for b in table.blocks for r in b.rows if r.kind == "paper"]
    return len(ours) <= 1 and not paper and len(table.blocks) > 1


def _cell_md(row: Row, metric: str) -> str:
    if row.kind == "paper":
        return fmt_paper(row.cells.get(metric), metric)
    cell = row.cells[metric]
    text = fmt_mean_ci(cell.mean, cell.half, metric)
    if cell.best:
        text = f"**{text}**"
    if cell.p is not None and cell.p < ALPHA:
        text += " †"
    return text


def markdown_table(table: Table) -> str:
    metrics = table.columns
    heads = [f"{header_of(m)} {ARROW_MD.get(better_of(m), '')}".strip() for m in metrics]
    lines = ["| Approach | " + " | ".join(heads) + " |", "|---" * (len(metrics) + 1) + "|"]
    flat = _single_approach(table)
    for block in table.blocks:
        if _show_block_headers(table) and not flat:
            lines.append(f"| **{block.label}** |" + " |" * len(metrics))
        for row in block.rows:
            if flat:
                name = f"{block.key} — {row.label}"
            else:
                name = row.label
            if row.kind == "ours":
                name += f" (n={row.n_finished}" + (f" of {row.n_runs}" if row.n_runs != row.n_finished else "") + ")"
            lines.append(f"| {name} | " + " | ".join(_cell_md(row, m) for m in metrics) + " |")
    return "\n".join(lines)


def markdown_pvalues(table: Table) -> str:
    """Paired t-tests against the baseline, per block, approach and metric."""
    lines = []
    for block in table.blocks:
        base = block.ours(table.baseline)
        for row in block.rows:
            if row.kind != "ours" or row is base:
                continue
            cells = []
            for metric in table.columns:
                cell = row.cells[metric]
                cells.append("n/a" if base is None else f"{fmt_p(cell.p)} ({cell.pairs} pairs)")
            lines.append(f"| {block.short} | {row.approach} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    heads = [header_of(m) for m in table.columns]
    top = ["| Setting | Approach | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    return "\n".join(top + lines)


_LATEX_UNICODE = {
    "×": r"$\times$", "λ": r"$\lambda$", "γ": r"$\gamma$", "—": "---", "–": "--", "→": r"$\rightarrow$",
    "≈": r"$\approx$", "‖": r"$\|$", "²": r"$^2$", "∇": r"$\nabla$", "±": r"$\pm$", "↑": r"$\uparrow$",
    "↓": r"$\downarrow$", "ê": r"$\hat{e}$", "q̂": r"$\hat{q}$", "−": "-", "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    sentinel = "\x00"
    text = str(text).replace("\\", sentinel)
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    text = text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    text = text.replace(sentinel, r"\textbackslash{}")
    for char, replacement in _LATEX_UNICODE.items():
        text = text.replace(char, replacement)
    return text


def _latex_number(text: str) -> str:
    """'5.10e-04' → '5.10{\\times}10^{-4}' (inside math mode)."""
    match = re.fullmatch(r"(-?[\d.]+)e([+-]\d+)", text)
    if not match:
        return text
    return f"{match.group(1)}{{\\times}}10^{{{int(match.group(2))}}}"


def _cell_tex(row: Row, metric: str) -> str:
    if row.kind == "paper":
        text = fmt_paper(row.cells.get(metric), metric)
        return "---" if text == "—" else f"${_latex_number(text)}$"
    cell = row.cells[metric]
    if cell.n == 0:
        return "---"
    mean_text = fmt_mean_ci(cell.mean, cell.half, metric)
    parts = [_latex_number(p) for p in mean_text.split(" ± ")]
    body = r" \pm ".join(parts)
    if cell.best:
        body = r"\mathbf{" + body + "}"
    if cell.p is not None and cell.p < ALPHA:
        return f"${{{body}}}^{{\\dagger}}$"
    return f"${body}$"


def latex_table(table: Table, suite_name: str) -> str:
    metrics = table.columns
    heads = [latex_escape(header_of(m)) + (f" {ARROW_TEX[better_of(m)]}" if better_of(m) else "") for m in metrics]
    width = len(metrics) + 1
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(metrics) + "}",
             r"\toprule", "Approach & " + " & ".join(heads) + r" \\", r"\midrule"]
    flat = _single_approach(table)
    for index, block in enumerate(table.blocks):
        if _show_block_headers(table) and not flat:
            if index:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_escape(block.label)}}}}} \\")
        for row in block.rows:
            name = f"{block.key} — {row.label}" if flat else row.label
            lines.append(latex_escape(name) + " & " + " & ".join(_cell_tex(row, m) for m in metrics) + r" \\")
    caption = (latex_escape(table.title) + r". Ours: mean $\pm$ half-width of the 95\% t-interval over seeds "
               r"(mean alone with one seed); $^\dagger$: p $<$ 0.05 in a paired t-test over seeds against "
               + latex_escape(table.baseline) + r"; bold: best mean per setting; ---: not measured or not reported.")
    if table.ref:
        caption += " Rows marked (paper) are the paper's reported numbers."
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{suite_name}-{table.stem}")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# -- plots -----------------------------------------------------------------------------------------------

def load_histories(suite_directory: Path, df: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for run_id in sorted(df["run_id"]):
        path = Path(suite_directory) / "runs" / run_id / store.HISTORY
        if path.exists():
            try:
                history = pd.read_csv(path)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                continue
            history["run_id"] = run_id
            frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def import_dependencies() -> None:
    """Import what writing a report imports on first use (matplotlib with the Agg backend, scipy.stats: most
    of a second), e.g. in a background thread of a process that waits for its workers (harness/cli.py)."""
    _pyplot()
    from scipy import stats  # noqa: F401


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, suite_directory: Path, stem: str) -> list[Path]:
    paths = [Path(suite_directory) / f"{stem}.png", Path(suite_directory) / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=120, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths


def _colors(tables: list[Table]) -> dict:
    plt = _pyplot()
    approaches = sorted({r.approach for t in tables for b in t.blocks for r in b.rows if r.kind == "ours"},
                        key=_approach_sort_key)
    cycle = plt.get_cmap("tab10").colors
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
    plt = _pyplot()
    colors = _colors(tables)
    fig, axes = plt.subplots(len(pairs), len(panels), figsize=(4.2 * len(panels), 3.0 * len(pairs)),
                             squeeze=False)
    for i, (table, block) in enumerate(pairs):
        approach_of_run = dict(zip(block.runs["run_id"], block.runs["_approach"]))
        rows = part[part["run_id"].isin(approach_of_run)]
        rows = rows.assign(_approach=rows["run_id"].map(approach_of_run))
        for j, (column, title) in enumerate(panels):
            ax = axes[i][j]
            positive = True
            for approach in sorted(rows["_approach"].unique(), key=_approach_sort_key):
                data = rows[rows["_approach"] == approach].dropna(subset=[column])
                if data.empty:
                    continue
                stats = data.groupby("step")[column].agg(["mean", "min", "max"]).sort_index()
                positive = positive and bool((stats["min"] > 0).all())
                ax.plot(stats.index, stats["mean"], label=approach, color=colors.get(approach), lw=1.2)
                ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2, color=colors.get(approach),
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
    paths = _save(fig, suite_directory, stem)
    plt.close(fig)
    return paths


def plot_final_metrics(suite_directory: Path, tables: list[Table]) -> list[Path]:
    """Bar charts of the final metrics per block: mean over seeds with the 95% CI as error bars."""
    pairs = [(t, b) for t, b in _all_blocks(tables)
             if any(r.kind == "ours" and r.cells[m].n > 0 for r in b.rows for m in t.columns)]
    if not pairs:
        return []
    width = max(len([m for m in t.columns if any(r.kind == "ours" and r.cells[m].n for r in b.rows)])
                for t, b in pairs)
    plt = _pyplot()
    colors = _colors(tables)
    fig, axes = plt.subplots(len(pairs), width, figsize=(2.6 * width, 2.6 * len(pairs)), squeeze=False)
    for i, (table, block) in enumerate(pairs):
        ours = [r for r in block.rows if r.kind == "ours"]
        metrics = [m for m in table.columns if any(r.cells[m].n for r in ours)]
        for j in range(width):
            ax = axes[i][j]
            if j >= len(metrics):
                ax.axis("off")
                continue
            metric = metrics[j]
            rows = [r for r in ours if r.cells[metric].n]
            means = [_scale(metric, r.cells[metric].mean) for r in rows]
            errors = [0.0 if r.cells[metric].half is None else _scale(metric, r.cells[metric].half) for r in rows]
            ax.bar(range(len(rows)), means, yerr=errors, capsize=3,
                   color=[colors.get(r.approach) for r in rows])
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels([r.approach for r in rows], rotation=45, ha="right", fontsize=6)
            arrow = ARROW_MD.get(better_of(metric), "")
            ax.set_title(f"{header_of(metric)} {arrow}\n{block.short}", fontsize=7)
            ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    paths = _save(fig, suite_directory, "final_metrics")
    plt.close(fig)
    return paths


TRAIN_PANELS = [("rec_loss", "reconstruction loss (train)"), ("usage_batch", "codebook usage (batch)"),
                ("quant_error", "quantization error (train)")]
VAL_PANELS = [("val_rec_loss", "validation rec. loss (MSE)"), ("val_loss", "validation loss (L_rec)"),
              ("val_usage", "codebook usage (val set)")]


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


# -- report.md -------------------------------------------------------------------------------------------

def _counts(values) -> str:
    counts = pd.Series(list(values)).map(_plain).value_counts()
    return ", ".join(f"{name}: {counts[name]}" for name in sorted(counts.index, key=_natural_key))


def _suite_file(path: Path) -> str:
    """The suite file relative to the project (a bare file name when it lives elsewhere): no machine paths."""
    from .suite import PROJECT_ROOT

    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else path.name


def _what_ran(df: pd.DataFrame, records: list[dict], suite, suite_name: str) -> list[str]:
    lines = ["## What ran", ""]
    if suite is not None:
        lines.append(f"- Suite: `{suite_name}` (`{_suite_file(suite.path)}`)")
        if suite.description:
            lines.append(f"- Description: {suite.description.strip()}")
    else:
        lines.append(f"- Suite: `{suite_name}` (suite file not loaded: no paper comparison)")
    profiles = [r.get("profile") or "(none)" for r in records]
    lines.append(f"- Profile: {_counts(profiles)} (runs per profile)")
    lines.append(f"- Runs: {len(df)} ({_counts(df['status'])})")
    seeds = sorted({s for s in df["_seed"] if s is not None}) if "_seed" in df else []
    if seeds:
        lines.append(f"- Seeds: {', '.join(map(str, seeds))}")
    for label, prefix, wanted in (("Model", "config.model.", ("family", "preset")),
                                  ("Data", "config.data.", None),
                                  ("Training", "config.training.", ("steps", "epochs", "batch_size", "lr",
                                                                    "weight_decay", "device", "precision")),
                                  ("Metrics", "config.metrics.", ("fidelity", "diagnostics"))):
        columns = [c for c in df.columns if c.startswith(prefix)
                   and (wanted is None or c[len(prefix):] in wanted)]
        if wanted is not None:
            columns.sort(key=lambda c: wanted.index(c[len(prefix):]))
        else:
            columns.sort()
        parts = []
        for column in columns:
            values = sorted({_plain(v) for v in df[column] if not _isnan(v)}, key=_natural_key)
            if values:
                parts.append(f"{column[len(prefix):]} = {' | '.join(values)}")
        if parts:
            lines.append(f"- {label}: " + "; ".join(parts))
    keys = setting_keys(df)
    if keys:
        lines.append(f"- Varying across settings: {', '.join(keys)} (one block per setting in the tables)")
    commits = []
    for record in records:
        provenance = record.get("provenance") or {}
        commit = provenance.get("git_commit") or "unknown"
        commits.append(commit[:12] + (" (uncommitted changes)" if provenance.get("git_dirty") else ""))
    if commits:
        lines.append(f"- Git commit: {_counts(commits)} (runs per commit)")
    failed = [r for r in records if r.get("status") != store.FINISHED]
    if failed:
        lines += ["", "Runs that did not finish:", ""]
        for record in sorted(failed, key=lambda r: r["run_id"]):
            label = ", ".join(f"{k}={_plain(v)}" for k, v in (record.get("label") or {}).items())
            reason = ""
            if record.get("traceback"):
                reason = ": " + record["traceback"].strip().splitlines()[-1][:200]
            elif record.get("diverged_at") is not None:
                reason = f": diverged at step {record['diverged_at']}"
            lines.append(f"- `{record['run_id']}` ({label}) — {record.get('status')}{reason}")
    return lines


def _fidelity_lines(df: pd.DataFrame, records: list[dict]) -> list[str]:
    lines = ["## Reconstruction fidelity (r-FID, r-IS, r-FVD)", ""]
    by_id = {r["run_id"]: r for r in records}
    finished = df[df["status"] == store.FINISHED]
    if finished.empty:
        return lines + ["No finished runs."]
    present = [m for m in FIDELITY_METRICS if m in finished.columns]
    reasons: dict[str, int] = {}
    computed: dict[str, int] = {}
    for _, run in finished.iterrows():
        measured = [m for m in present if not _isnan(run[m])]
        record = by_id.get(run["run_id"], {})
        note = ((record.get("notes") or {}).get("fidelity") or "").strip()
        if measured:
            key = f"{', '.join(measured)} ({note or 'computed'})"
            computed[key] = computed.get(key, 0) + 1
            continue
        fidelity_on = run.get("config.metrics.fidelity")
        if note:
            reason = note if "not computed" in note else f"r-FID / r-IS / r-FVD not computed: {note}"
        elif _isnan(fidelity_on) or not bool(fidelity_on):
            reason = "r-FID / r-IS / r-FVD not computed: metrics.fidelity is off for these runs"
        else:
            reason = "r-FID / r-IS / r-FVD not computed: the record has no fidelity note"
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason in sorted(reasons):
        lines.append(f"- {reason} ({reasons[reason]} of {len(finished)} finished runs).")
    for key in sorted(computed):
        lines.append(f"- Computed: {key} ({computed[key]} of {len(finished)} finished runs).")
    lines += ["", "A number appears in an r-FID / r-IS / r-FVD column only where it was measured; otherwise "
                  "the cell shows —."]
    return lines


def agreement(tables: list[Table], suite) -> list[dict]:
    """For every claim the paper's numbers make (paper_numbers.claims) in the tables and sections the suite
    names: whether our means go the same direction. Status: agree / disagree / not measured / tie in paper."""
    table_refs, section_refs = _refs(suite)
    blocks = [(t, b) for t in tables for b in t.blocks]
    out = []

    def find(ref, setting):
        for table, block in blocks:
            if block.ref == ref and block.setting == setting:
                return table, block
        return None, None

    def compare(ref, setting, metric, approach, baseline, paper_direction, paper_a=None, paper_b=None, extra=None):
        _, block = find(ref, setting)
        item = {"ref": ref, "setting": setting, "metric": metric, "approach": approach, "baseline": baseline,
                "paper_approach": paper_a, "paper_baseline": paper_b, "paper_direction": paper_direction,
                "ours_approach": None, "ours_baseline": None, "ours_direction": None, "p": None, "pairs": 0,
                "status": "tie in paper" if paper_direction == "tie" else "not measured", "why": "",
                **(extra or {})}
        if block is None:
            item["why"] = "setting not run"
            return item
        missing = [name for name in (approach, baseline) if block.ours(name) is None]
        if missing:
            item["why"] = f"{' and '.join(missing)} not run (or no run finished)"
            return item
        cell_a, cell_b = metric_cells(block, [approach, baseline], metric)
        if cell_a.n == 0 or cell_b.n == 0:
            item["why"] = f"{metric} not recorded"
            return item
        item["ours_approach"], item["ours_baseline"] = cell_a.mean, cell_b.mean
        item["ours_direction"] = paper_numbers.direction(cell_a.mean, cell_b.mean, better_of(metric))
        item["p"], item["pairs"] = paired_p(cell_a.values, cell_b.values)
        if paper_direction != "tie":
            item["status"] = "agree" if item["ours_direction"] == paper_direction else "disagree"
        return item

    for ref in table_refs:
        for claim in paper_numbers.claims(ref):
            out.append(compare(ref, claim["setting"], claim["metric"], claim["approach"], claim["baseline"],
                               claim["direction"], claim["paper_approach"], claim["paper_baseline"]))
    for ref in section_refs:
        for ratio in paper_numbers.SECTIONS[ref]["ratios"]:
            # the paper: approach (reflection) ≈ ratio × reference (rotation) on a lower-is-better loss, so the
            # reference is the better one
            item = compare(ref, ratio["setting"], ratio["metric"], ratio["reference"], ratio["approach"],
                           "better", extra={"paper_ratio": ratio["ratio"], "when": ratio["when"]})
            if item["ours_approach"]:  # None when not measured; a zero loss has no ratio
                item["ours_ratio"] = item["ours_baseline"] / item["ours_approach"]
            out.append(item)
    return out


def metric_cells(block: Block, approaches: list[str], metric: str) -> list[Cell]:
    """Statistics of any recorded metric (not only the table's columns) for approaches of a block."""
    cells = []
    for approach in approaches:
        done = block.runs[(block.runs["_approach"] == approach) & (block.runs["status"] == store.FINISHED)]
        values = {}
        if metric in done.columns:
            for _, run in done.sort_values("_seed", na_position="last").iterrows():
                if not _isnan(run[metric]):
                    values[run["_seed"]] = float(run[metric])
        mean, half, n = mean_ci(values.values())
        cells.append(Cell(values=values, mean=mean, half=half, n=n))
    return cells


def _setting_label(ref: str, setting: str) -> str:
    return paper_numbers.reference(ref)["settings"][setting]["label"]


def _agreement_lines(items: list[dict], suite) -> list[str]:
    lines = ["## Agreement with the paper", ""]
    table_refs, section_refs = _refs(suite)
    unknown = _unknown_refs(suite)
    if unknown:
        lines.append(f"The suite names {', '.join(unknown)}: harness/paper_numbers.py holds no numbers for "
                     f"{'it' if len(unknown) == 1 else 'them'}, so nothing is compared here (see the figures).")
        claim = (suite.paper or {}).get("claim")
        if claim:
            lines.append(f"The paper, as the suite states it: {' '.join(str(claim).split())}")
        lines.append("")
    if not table_refs and not section_refs:
        if unknown:
            return lines
        return lines + ["The suite names no paper table or section (`paper: {table: ...}`); nothing to compare."]
    lines += ["Direction only: does our mean for the approach beat the other approach's in the same direction "
              "as the paper's numbers? Our setting is a stand-in for the paper's where the profile runs at "
              "a smaller scale; the sizes of the numbers are not comparable, only their order. "
              "`tie in paper`: the paper prints equal numbers, so it claims no direction.", ""]
    for ref in table_refs + section_refs:
        spec = paper_numbers.reference(ref)
        mine = [i for i in items if i["ref"] == ref]
        lines.append(f"### {spec['title']}")
        lines.append("")
        lines.append(f"The paper: {spec.get('claim') or spec.get('statement')}")
        lines.append("")
        if not mine:
            lines += ["The paper reports no numbers to compare with here.", ""]
            continue
        counts = {s: sum(i["status"] == s for i in mine) for s in ("agree", "disagree", "not measured",
                                                                     "tie in paper")}
        lines.append("Summary: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
        lines.append("")
        ratio_mode = any("paper_ratio" in i for i in mine)
        if ratio_mode:
            lines += ["| Setting | Metric | Comparison | Paper | Ours | p (paired) | Agreement |",
                      "|---|---|---|---|---|---|---|"]
        else:
            lines += ["| Setting | Metric | Comparison | Paper | Ours (mean) | p (paired) | Agreement |",
                      "|---|---|---|---|---|---|---|"]
        not_run = {}
        for item in mine:
            if item["why"] == "setting not run":
                not_run[item["setting"]] = not_run.get(item["setting"], 0) + 1
                continue
            metric = item["metric"]
            metric_text = f"{header_of(metric)} {ARROW_MD.get(better_of(metric), '')}".strip()
            comparison = f"{item['approach']} vs {item['baseline']}"
            if ratio_mode:
                paper = f"{item['baseline']} ≈ {item['paper_ratio']:g}× {item['approach']} ({item['when']})"
                ours = ("—" if item["ours_approach"] is None else
                        f"{item['baseline']} = {_fmt_ratio(item.get('ours_ratio'))} {item['approach']} "
                        f"({fmt_value(item['ours_baseline'], metric)} vs {fmt_value(item['ours_approach'], metric)})")
            else:
                paper = (f"{fmt_paper(item['paper_approach'], metric)} vs {fmt_paper(item['paper_baseline'], metric)}"
                         f" ({item['paper_direction']})")
                ours = ("—" if item["ours_approach"] is None else
                        f"{fmt_value(item['ours_approach'], metric)} vs {fmt_value(item['ours_baseline'], metric)} "
                        f"({item['ours_direction']})")
            p = fmt_p(item["p"]) if item["ours_approach"] is not None else "—"
            status = item["status"] + (f" ({item['why']})" if item["status"] == "not measured" and item["why"] else "")
            lines.append(f"| {_setting_label(ref, item['setting'])} | {metric_text} | {comparison} | {paper} | "
                         f"{ours} | {p} | {status} |")
        if len(not_run) == len({i["setting"] for i in mine}):
            lines = lines[:-2]  # no table at all: every setting is missing
        lines.append("")
        for setting, count in not_run.items():
            lines.append(f"- Not run in these results: {_setting_label(ref, setting)} ({count} claims not measured).")
        if not_run:
            lines.append("")
    return lines


def _definition_lines(tables: list[Table]) -> list[str]:
    metrics = list(dict.fromkeys(m for t in tables for m in t.columns))
    known = [m for m in metrics if m in paper_numbers.METRICS]
    if not known:
        return []
    lines = ["## Metric definitions", ""]
    for metric in known:
        lines.append(f"- `{metric}` ({header_of(metric)}, {ARROW_MD.get(better_of(metric), '')} better): "
                     f"{paper_numbers.METRICS[metric]['definition']}")
    return lines + [""]


def write_suite_report(suite_directory: str | Path, suite=None, *, figures: bool = True) -> dict:
    """Write results.csv, the LaTeX tables, the plots and report.md for one suite's results; return the text
    summary and the files written. Never trains; regenerating gives byte-identical files."""
    suite_directory = Path(suite_directory)
    df = store.load_results(suite_directory)
    if df.empty:
        return {"summary": "(no runs recorded)", "files": []}
    records = sorted(store.iter_records(suite_directory), key=lambda r: r["run_id"])
    df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    store.atomic_write_text(suite_directory / "results.csv", df.to_csv(index=False))
    files = [suite_directory / "results.csv"]
    suite_name = suite.name if suite is not None else suite_directory.name

    tables = build_tables(df, suite)
    tables = [t for t in tables if t.columns and any(r.kind == "ours" for b in t.blocks for r in b.rows)]
    for table in tables:
        path = suite_directory / f"{table.stem}.tex"
        store.atomic_write_text(path, latex_table(table, suite_name))
        files.append(path)

    figure_paths, figure_messages = [], []
    if figures:
        histories = load_histories(suite_directory, df)
        figure_paths += plot_curves(suite_directory, tables, histories, "train", TRAIN_PANELS, "training_curves")
        figure_paths += plot_curves(suite_directory, tables, histories, "eval", VAL_PANELS, "validation_curves")
        figure_paths += plot_final_metrics(suite_directory, tables)
        names = [str(n) for n in _as_list((suite.report if suite is not None else {}).get("figures"))]
        extra, figure_messages = extra_figures(suite_directory, store.load_results(suite_directory), names)
        figure_paths += extra
    files += figure_paths

    full = df.assign(_seed=[_seed_of(row) for _, row in df.iterrows()])
    items = agreement(tables, suite)
    lines = [f"# Report: {suite_name}", ""]
    lines += _what_ran(full, records, suite, suite_name) + [""]
    lines += ["## Tables", ""]
    if not tables:
        lines += ["No finished runs with table metrics.", ""]
    summary_parts = []
    for table in tables:
        md = markdown_table(table)
        summary_parts.append(f"{table.title}\n{md}")
        lines += [f"### {table.title}", "",
                  f"Mean ± half-width of the 95% t-interval over seeds (n = finished seeds; the mean alone when "
                  f"n = 1). Bold: best mean per setting. †: p < {ALPHA} in a paired t-test over seeds against "
                  f"`{table.baseline}`." + (" Rows marked (paper) are the paper's numbers." if table.ref else ""),
                  "", md, "", f"LaTeX: [{table.stem}.tex]({table.stem}.tex)", ""]
        pvalues = markdown_pvalues(table)
        if pvalues:
            lines += [f"Paired t-test against `{table.baseline}` (scipy.stats.ttest_rel over seeds; p-value and "
                      f"number of pairs; n/a: fewer than 2 pairs or no `{table.baseline}` run in the setting):",
                      "", pvalues, ""]
    lines += ["## Figures", ""]
    for path in figure_paths:
        relative = path.relative_to(suite_directory) if path.is_relative_to(suite_directory) else path
        if path.suffix == ".png":
            lines.append(f"![{path.stem}]({relative})")
        else:
            lines.append(f"- [{relative}]({relative})")
    for message in figure_messages:
        lines.append(f"- {message}")
    if not figure_paths and not figure_messages:
        lines.append("No figures (no histories recorded)." if figures else "Figures not drawn (figures=False).")
    lines.append("")
    lines += _fidelity_lines(full, records) + [""]
    lines += _agreement_lines(items, suite)
    lines += _definition_lines(tables)
    text = "\n".join(lines).rstrip("\n") + "\n"
    store.atomic_write_text(suite_directory / "report.md", text)
    files.append(suite_directory / "report.md")

    counts = {s: sum(i["status"] == s for i in items) for s in ("agree", "disagree", "not measured")}
    summary = "\n\n".join(summary_parts) or "(no finished runs with table metrics)"
    if items:
        summary += "\n\nAgreement with the paper: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    return {"summary": summary, "files": files}
