"""The table model: one table per paper table the suite names (paper Tables 1-7), then the suite's own table
for its other runs. A table has one block per setting; a block has one row per approach (ours: the mean over
seeds ± the 95% t-interval, a paired t-test against the baseline) and, for a paper table, the paper's rows
(marked "(paper)") right after ours of the same approach.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import paper_numbers
from ..status import RunStatus
from .formatting import as_list, isnan, natural_key
from .metrics import SUITE_TABLE_METRICS, metric
from .settings import annotate, approach_keys_of, approach_sort_key, matches, paper_refs, setting_rules
from .stats import mean_ci, paired_p

DEFAULT_BASELINE = "ste"


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
    note: str = ""  # the paper's note on its row (e.g. "the authors' run")


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
        return next((r for r in self.rows if r.kind == "ours" and r.approach == approach), None)


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

    @property
    def has_ours(self) -> bool:
        return bool(self.columns) and any(r.kind == "ours" for b in self.blocks for r in b.rows)


def baseline_of(suite) -> str:
    """The approach the paired tests compare with (`report: {baseline: ...}`, default `ste`)."""
    return str((suite.report if suite is not None else {}).get("baseline") or DEFAULT_BASELINE)


def build_tables(df: pd.DataFrame, suite=None) -> list[Table]:
    """The tables of a suite's results: one per paper table the suite names (with runs), then the suite's own
    table for the other runs. Statistics are over finished runs."""
    if df.empty:
        return []
    df = annotate(df, approach_keys_of(suite))
    table_refs, section_refs = paper_refs(suite)
    rules = setting_rules(suite, table_refs + section_refs)
    blocks = []
    for key in sorted(df["_setting"].unique(), key=natural_key):
        block = Block(key=key, runs=df[df["_setting"] == key])
        for ref, setting, alternatives in rules:
            if any(matches(block.runs, m) for m in alternatives):
                block.ref, block.setting = ref, setting
                break
        blocks.append(block)

    baseline = baseline_of(suite)
    tables = []
    for ref in table_refs:
        spec = paper_numbers.TABLES[ref]
        mine = [b for b in blocks if b.ref == ref]
        if not mine:
            continue
        order = list(spec["settings"])
        mine.sort(key=lambda b: (order.index(b.setting), natural_key(b.key)))
        tables.append(Table(id=ref, ref=ref, title=spec["title"], columns=list(spec["columns"]), blocks=mine,
                            baseline=baseline))
    rest = [b for b in blocks if b.ref is None or b.ref in section_refs]
    if rest:
        finished = df[df["status"] == RunStatus.FINISHED]
        wanted = as_list((suite.report if suite is not None else {}).get("metrics")) or SUITE_TABLE_METRICS
        columns = [m for m in wanted if m in finished.columns and finished[m].notna().any()]
        name = suite.name if suite is not None else str(df["suite"].iloc[0])
        titles = [paper_numbers.SECTIONS[s]["title"] for s in section_refs]
        title = name + (f" ({'; '.join(titles)})" if titles else "")
        tables.append(Table(id=name, ref=None, title=title, columns=columns, blocks=rest, baseline=baseline))
    for table in tables:
        for block in table.blocks:
            block.rows = _rows(table, block)
    return tables


def metric_cells(block: Block, approaches: list[str], metric_name: str) -> list[Cell]:
    """Statistics of any recorded metric (not only the table's columns) for approaches of a block."""
    cells = []
    for approach in approaches:
        done = block.runs[(block.runs["_approach"] == approach) & (block.runs["status"] == RunStatus.FINISHED)]
        values = {}
        if metric_name in done.columns:
            for _, run in done.sort_values("_seed", na_position="last").iterrows():
                if not isnan(run[metric_name]):
                    values[run["_seed"]] = float(run[metric_name])
        mean, half, n = mean_ci(values.values())
        cells.append(Cell(values=values, mean=mean, half=half, n=n))
    return cells


def _rows(table: Table, block: Block) -> list[Row]:
    runs = block.runs
    finished = runs[runs["status"] == RunStatus.FINISHED]
    rows = []
    for approach in sorted(finished["_approach"].unique(), key=approach_sort_key):
        row = Row(approach=approach, kind="ours", label=approach, n_runs=int((runs["_approach"] == approach).sum()),
                  n_finished=int((finished["_approach"] == approach).sum()))
        row.cells = {name: metric_cells(block, [approach], name)[0] for name in table.columns}
        rows.append(row)
    _mark_paired_tests(rows, table.baseline)
    _mark_best(rows, table.columns)
    if table.ref is not None and block.setting is not None:
        for paper_row in paper_numbers.rows(table.ref, block.setting):
            note = f"; {paper_row['note']}" if paper_row["note"] else ""
            rows.append(Row(approach=paper_row["approach"], kind="paper",
                            label=f"{paper_row['approach']} (paper{note})", note=paper_row["note"],
                            cells={m: paper_row["values"].get(m) for m in table.columns}))
        # the paper's rows right after ours of the same approach (or where the approach would sort)
        rows.sort(key=lambda r: (approach_sort_key(r.approach), r.kind != "ours"))
    return rows


def _mark_paired_tests(rows: list[Row], baseline: str) -> None:
    reference = next((r for r in rows if r.approach == baseline), None)
    if reference is None:
        return
    for row in rows:
        if row is not reference:
            for name, cell in row.cells.items():
                cell.p, cell.pairs = paired_p(cell.values, reference.cells[name].values)


def _mark_best(rows: list[Row], columns: list[str]) -> None:
    for name in columns:
        better = metric(name).better
        measured = [r for r in rows if r.cells[name].n > 0]
        if better is None or len(measured) < 2:
            continue
        means = [r.cells[name].mean for r in measured]
        best = max(means) if better == "up" else min(means)
        for row in measured:
            row.cells[name].best = row.cells[name].mean == best
