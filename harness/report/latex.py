"""A table as a booktabs LaTeX file (`<paper table id>.tex` or `table.tex`) a paper can take as is: it fits the
text width of the ICLR single-column format (5.5 in; tests/test_report_latex.py compiles every table the
report writes and fails on an overfull box), names the approaches as the paper does (names.py), says in
words what each block is, and moves the run configuration and the registry names to the caption.

Layout, like the paper's tables (paper Tables 1-7): the same columns with arrows for the better direction,
one block per setting, the paper's rows marked "(paper)" right after ours. The 95% interval's style
(`INTERVAL_STYLES`, the suite's `report: {interval: ...}` or `make-report --interval`):

- `below` (default): the mean, and under it a smaller row with ± the half-width;
- `beside`: `mean ± half-width` in one cell, the table scaled down to the text width when wider (graphicx);
- `caption`: the mean alone; the caption gives each column's range of half-widths.
"""
from __future__ import annotations

import re
import string

from .formatting import fmt_mean_ci, fmt_paper, fmt_value
from .markdown import show_block_headers, single_approach
from .metrics import metric
from .names import (LATEX_NAMES, NAME_STYLES, approach_labels, paper_name, registry_names, split_variant,
                    with_variant)
from .stats import ALPHA
from .tables import Block, Row, Table

INTERVAL_STYLES = ("below", "beside", "caption")
DEFAULT_INTERVAL = "below"
#: A block header longer than this (characters) is shown as "Setting (a)"; the caption describes it.
LONG_HEADER = 60

ARROWS_TEX = {"up": r"$\uparrow$", "down": r"$\downarrow$"}
_UNICODE = {
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
    for char, replacement in _UNICODE.items():
        text = text.replace(char, replacement)
    return text


def latex_number(text: str) -> str:
    """'5.10e-04' → '5.10{\\times}10^{-4}' (inside math mode)."""
    match = re.fullmatch(r"(-?[\d.]+)e([+-]\d+)", text)
    if not match:
        return text
    return f"{match.group(1)}{{\\times}}10^{{{int(match.group(2))}}}"


def latex_name(label: str) -> str:
    """An approach's label in LaTeX: the paper's formulas (λRe, ...) as math, the rest escaped."""
    for name, tex in LATEX_NAMES.items():
        if label == name or label.startswith(name + " "):
            return tex + latex_escape(label[len(name):])
    return latex_escape(label)


def _head(name: str) -> str:
    """A column header with its arrow, on two lines (a one-column tabular) when it is more than one word:
    the tables' width is in their headers."""
    text, words = metric(name).header, metric(name).header.split(" ")
    arrow = f" {ARROWS_TEX[metric(name).better]}" if metric(name).better else ""
    if len(words) < 2:
        return latex_escape(text) + arrow
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    top, bottom = latex_escape(" ".join(words[:cut])), latex_escape(" ".join(words[cut:])) + arrow
    return rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{top}\\{bottom}\end{{tabular}}"


def _math(text: str) -> str:
    """One of our formatted numbers ('0.13 ± 0.06', '2.1e-03') as math-mode LaTeX."""
    return r" \pm ".join(latex_number(part) for part in text.split(" ± "))


def _cell(row: Row, name: str, interval: str) -> str:
    if row.kind == "paper":
        text = fmt_paper(row.cells.get(name), name)
        return "---" if text == "—" else f"${latex_number(text)}$"
    cell = row.cells[name]
    if cell.n == 0:
        return "---"
    half = cell.half if interval == "beside" else None
    body = _math(fmt_mean_ci(cell.mean, half, name))
    if cell.best:
        body = r"\mathbf{" + body + "}"
    if cell.p is not None and cell.p < ALPHA:
        return f"${{{body}}}^{{\\dagger}}$"
    return f"${body}$"


def _interval_cell(row: Row, name: str) -> str:
    """The `below` style's second row: ± the half-width in the mean's number style, in a smaller font."""
    cell = row.cells[name]
    if cell.n == 0 or cell.half is None:
        return ""
    half = fmt_mean_ci(cell.mean, cell.half, name).split(" ± ")[1]
    return rf"{{\scriptsize $\pm {latex_number(half)}$}}"


def _words(key: str) -> str:
    """'model.lookup=cosine, model.latent_dim=3' → 'lookup cosine, latent dim 3'."""
    parts = []
    for part in key.split(", "):
        name, _, value = part.partition("=")
        parts.append(f"{name.rsplit('.', 1)[-1].replace('_', ' ')} {value}".strip())
    return ", ".join(parts)


def block_heading(block: Block, letter: str) -> str:
    """What a block is, in words (plain text): the paper's setting, or the values that set it apart."""
    words = block.label.split(" — ours: ")[0] if block.ref is not None else _words(block.key) or "all runs"
    return f"({letter}) " + (words if len(words) <= LONG_HEADER else "setting")


def _caption(table: Table, suite_name: str, letters: dict, labels: dict, interval: str, notes: dict,
             approaches: list[str]) -> str:
    """The table's title, how to read it, what a row's variant is, each block's run configuration, the
    registry names (`labels`: the estimators' labels, without variants) and the notes of the paper's rows."""
    shown = {"below": r"mean over seeds, below it $\pm$ the half-width of the 95\% t-interval",
             "beside": r"mean $\pm$ half-width of the 95\% t-interval over seeds",
             "caption": "mean over seeds"}[interval]
    parts = [latex_escape(table.title) + ".",
             f"Ours{f' ({latex_escape(suite_name)})' if table.ref else ''}: {shown} (the mean alone with one seed); $^\\dagger$: p $<$ "
             f"{ALPHA} in a paired t-test over seeds against {latex_name(labels.get(table.baseline, table.baseline))}"
             "; bold: best mean per setting; ---: not measured or not reported."]
    if interval == "caption":
        ranges = _half_width_ranges(table)
        if ranges:
            parts.append("Half-widths of the 95\\% t-intervals: " + "; ".join(ranges) + ".")
    if any(name.startswith("train_") for name in table.columns):
        parts.append("Training metrics are end-of-training values (the mean of the values logged in the "
                     r"run's last steps, by default its last 10\%; report.md gives the steps).")
    if table.ref:
        parts.append("Rows marked (paper) are the paper's reported numbers.")
    if any(split_variant(a)[1] for a in approaches):
        parts.append(f"After +: the model options that differ from the family's defaults "
                     f"({latex_name(labels.get(table.baseline, table.baseline))} alone has the defaults).")
    configured = [(letters[id(b)], b.key) for b in table.blocks if b.key]
    if configured:
        parts.append("Our runs: " + "; ".join(f"({letter}) {latex_escape(key)}" for letter, key in configured) + ".")
    renamed = registry_names(labels)
    if renamed:
        parts.append("Harness estimators: " + "; ".join(
            f"{latex_name(label)}: \\texttt{{{latex_escape(approach)}}}" for label, approach in renamed) + ".")
    for note, mark in notes.items():
        parts.append(f"$^{{{mark}}}$ {latex_escape(note)}.")
    return " ".join(parts)


def _half_width_ranges(table: Table) -> list[str]:
    ranges = []
    for name in table.columns:
        halves = sorted(r.cells[name].half for b in table.blocks for r in b.rows
                        if r.kind == "ours" and r.cells[name].half is not None)
        if halves:
            low, high = (fmt_value(h, name) for h in (halves[0], halves[-1]))
            span = low if low == high else f"{low} to {high}"
            ranges.append(f"{latex_escape(metric(name).header)} ${_math(span).replace(' to ', '$ to $')}$")
    return ranges


def _row_label(row: Row, labels: dict, notes: dict, table_ref: str | None, names: str) -> str:
    """Our row: the approach's label. The paper's: the same with "(paper)", and a letter for its note (the
    caption gives the note) unless the note is only the paper's name of the approach."""
    if row.kind == "ours":
        return latex_name(labels[row.approach])
    fallback = row.approach if names == "registry" else paper_name(row.approach, table_ref)
    label = latex_name(f"{labels.get(row.approach) or fallback} (paper)")
    note = row.note
    if note and note != paper_name(row.approach, table_ref):
        notes.setdefault(note, string.ascii_lowercase[len(notes) % 26])
        label += f"$^{{{notes[note]}}}$"
    return label


def latex_table(table: Table, suite_name: str, *, interval: str = DEFAULT_INTERVAL, names: str = "paper") -> str:
    """The table as booktabs LaTeX (a `table` float with caption and label); see the module docstring."""
    if interval not in INTERVAL_STYLES:
        raise ValueError(f"interval style {interval!r}: choose one of {', '.join(INTERVAL_STYLES)}")
    columns = table.columns
    if names not in NAME_STYLES:
        raise ValueError(f"approach names {names!r}: choose one of {', '.join(NAME_STYLES)}")
    heads = [_head(n) for n in columns]
    width = len(columns) + 1
    lines = [r"% needs \usepackage{booktabs} and \usepackage{graphicx}",
             r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"]  # scaled down only when wider
    lines += [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             "Approach & " + " & ".join(heads) + r" \\", r"\midrule"]
    ours = list(dict.fromkeys(r.approach for b in table.blocks for r in b.rows if r.kind == "ours"))
    # the estimators' labels (the caption maps them to the registry), then each row's with its variant
    estimators = list(dict.fromkeys(split_variant(a)[0] for a in ours))
    named = approach_labels(estimators, table.ref, "registry" if names == "registry" else "paper")
    if names == "both":
        named = {e: f"{label} [{e}]" if label != e else label for e, label in named.items()}
    labels = {a: with_variant(named[split_variant(a)[0]], split_variant(a)[1]) for a in ours}
    letters = {id(b): string.ascii_lowercase[i % 26] for i, b in enumerate(table.blocks)}
    notes: dict[str, str] = {}
    flat = single_approach(table)
    for index, block in enumerate(table.blocks):
        if show_block_headers(table) and not flat:
            if index:
                lines.append(r"\midrule")
            heading = latex_escape(block_heading(block, letters[id(block)]))
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{heading}}}}} \\")
        for row in block.rows:
            label = _row_label(row, labels, notes, table.ref, names)
            if flat:
                label = latex_escape(block_heading(block, letters[id(block)]))
            lines.append(label + " & " + " & ".join(_cell(row, n, interval) for n in columns) + r" \\")
            if interval == "below" and row.kind == "ours":
                below = [_interval_cell(row, n) for n in columns]
                if any(below):
                    lines.append(" & " + " & ".join(below) + r" \\")
    caption = _caption(table, suite_name, letters, named, interval, notes, ours)
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{suite_name}-{table.stem}")
    lines += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
