"""A table in markdown (report.md): bold best mean per setting, † where the paired t-test against the
baseline gives p < 0.05, and the p-values themselves in a second table."""
from __future__ import annotations

from .formatting import fmt_mean_ci, fmt_p, fmt_paper
from .metrics import metric
from .stats import ALPHA
from .tables import Row, Table


def show_block_headers(table: Table) -> bool:
    return len(table.blocks) > 1 or any(b.ref is not None for b in table.blocks)


def single_approach(table: Table) -> bool:
    """Only one approach in the whole table (e.g. a grid over a model setting): one row per setting."""
    ours = {r.approach for b in table.blocks for r in b.rows if r.kind == "ours"}
    paper = [r for b in table.blocks for r in b.rows if r.kind == "paper"]
    return len(ours) <= 1 and not paper and len(table.blocks) > 1


def _cell(row: Row, name: str) -> str:
    if row.kind == "paper":
        return fmt_paper(row.cells.get(name), name)
    cell = row.cells[name]
    text = fmt_mean_ci(cell.mean, cell.half, name)
    if cell.best:
        text = f"**{text}**"
    if cell.p is not None and cell.p < ALPHA:
        text += " †"
    return text


def markdown_table(table: Table) -> str:
    names = table.columns
    lines = ["| Approach | " + " | ".join(metric(n).label for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    flat = single_approach(table)
    for block in table.blocks:
        if show_block_headers(table) and not flat:
            lines.append(f"| **{block.label}** |" + " |" * len(names))
        for row in block.rows:
            label = f"{block.key} — {row.label}" if flat else row.label
            if row.kind == "ours":
                label += f" (n={row.n_finished}" + (f" of {row.n_runs}" if row.n_runs != row.n_finished else "") + ")"
            lines.append(f"| {label} | " + " | ".join(_cell(row, n) for n in names) + " |")
    return "\n".join(lines)


def markdown_pvalues(table: Table) -> str:
    """Paired t-tests against the baseline, per block, approach and metric ('' when there are none)."""
    lines = []
    for block in table.blocks:
        base = block.ours(table.baseline)
        for row in block.rows:
            if row.kind != "ours" or row is base:
                continue
            cells = ["n/a" if base is None else f"{fmt_p(row.cells[n].p)} ({row.cells[n].pairs} pairs)"
                     for n in table.columns]
            lines.append(f"| {block.short} | {row.approach} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    heads = [metric(n).header for n in table.columns]
    return "\n".join(["| Setting | Approach | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"] + lines)
