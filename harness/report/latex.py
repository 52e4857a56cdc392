"""A table as a booktabs LaTeX file (`<paper table id>.tex` or `table.tex`), shaped like the paper's tables:
the same columns with arrows for the better direction, one block per setting, the paper's rows marked
"(paper)"."""
from __future__ import annotations

import re

from .formatting import fmt_mean_ci, fmt_paper
from .markdown import show_block_headers, single_approach
from .metrics import metric
from .stats import ALPHA
from .tables import Row, Table

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


def _cell(row: Row, name: str) -> str:
    if row.kind == "paper":
        text = fmt_paper(row.cells.get(name), name)
        return "---" if text == "—" else f"${latex_number(text)}$"
    cell = row.cells[name]
    if cell.n == 0:
        return "---"
    body = r" \pm ".join(latex_number(part) for part in fmt_mean_ci(cell.mean, cell.half, name).split(" ± "))
    if cell.best:
        body = r"\mathbf{" + body + "}"
    if cell.p is not None and cell.p < ALPHA:
        return f"${{{body}}}^{{\\dagger}}$"
    return f"${body}$"


def latex_table(table: Table, suite_name: str) -> str:
    names = table.columns
    heads = [latex_escape(metric(n).header) + (f" {ARROWS_TEX[metric(n).better]}" if metric(n).better else "")
             for n in names]
    width = len(names) + 1
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * len(names) + "}",
             r"\toprule", "Approach & " + " & ".join(heads) + r" \\", r"\midrule"]
    flat = single_approach(table)
    for index, block in enumerate(table.blocks):
        if show_block_headers(table) and not flat:
            if index:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_escape(block.label)}}}}} \\")
        for row in block.rows:
            label = f"{block.key} — {row.label}" if flat else row.label
            lines.append(latex_escape(label) + " & " + " & ".join(_cell(row, n) for n in names) + r" \\")
    caption = (latex_escape(table.title) + r". Ours: mean $\pm$ half-width of the 95\% t-interval over seeds "
               r"(mean alone with one seed); $^\dagger$: p $<$ 0.05 in a paired t-test over seeds against "
               + latex_escape(table.baseline) + r"; bold: best mean per setting; ---: not measured or not reported.")
    if table.ref:
        caption += " Rows marked (paper) are the paper's reported numbers."
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{suite_name}-{table.stem}")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
