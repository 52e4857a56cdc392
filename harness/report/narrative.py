"""report.md's sections other than the agreement: what ran (and which records of the folder were left out),
the tables with their paired tests, the figures, the fidelity note and the metric definitions."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..status import RunStatus
from .formatting import isnan, natural_key, plain
from .loading import LoadedResults
from .markdown import markdown_pvalues, markdown_table
from .metrics import FIDELITY_METRICS, METRICS, metric
from .names import split_variant
from .settings import approach_keys_of, setting_keys, variant_keys
from .stats import ALPHA
from .tables import Table

#: How many run ids report.md lists before it says "and N more".
LISTED_IDS = 10


def _counts(values) -> str:
    counts = pd.Series(list(values)).map(plain).value_counts()
    return ", ".join(f"{name}: {counts[name]}" for name in sorted(counts.index, key=natural_key))


def _suite_file(path: Path) -> str:
    """The suite file relative to the project (a bare file name when it lives elsewhere): no machine paths."""
    from ..suite import PROJECT_ROOT

    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else path.name


def _id_list(ids) -> str:
    shown = ", ".join(f"`{i}`" for i in ids[:LISTED_IDS])
    return shown + (f" and {len(ids) - LISTED_IDS} more" if len(ids) > LISTED_IDS else "")


def left_out_lines(loaded: LoadedResults) -> list[str]:
    """The suite's runs without a record, the folder's records that are not runs of the suite, the damaged
    record files: each named, none counted."""
    lines = []
    missing = (loaded.expected or 0) - len(loaded.records)
    if loaded.expected is not None and missing:
        lines.append(f"- Not recorded: {missing} of the suite's {loaded.expected} runs")
    if loaded.outside:
        lines.append(f"- Not part of this suite: {len(loaded.outside)} record{'s' if len(loaded.outside) > 1 else ''}"
                     f" in this folder from another configuration (an earlier `base`, another `--profile` or "
                     f"`--set`, or another suite file with the same name), not counted: {_id_list(loaded.outside)}")
    if loaded.damaged:
        lines.append(f"- Damaged records, not read: {'; '.join(f'`{d}`' for d in loaded.damaged)}")
    return lines


def what_ran(df: pd.DataFrame, loaded: LoadedResults, suite, suite_name: str) -> list[str]:
    lines = ["## What ran", ""]
    if suite is not None:
        lines.append(f"- Suite: `{suite_name}` (`{_suite_file(suite.path)}`)")
        if suite.description:
            lines.append(f"- Description: {suite.description.strip()}")
    else:
        lines.append(f"- Suite: `{suite_name}` (suite file not loaded: no paper comparison)")
    records = loaded.records
    if records:
        lines.append(f"- Profile: {_counts(r.get('profile') or '(none)' for r in records)} (runs per profile)")
        lines.append(f"- Runs: {len(df)} ({_counts(df['status'])})")
    lines += left_out_lines(loaded)
    if not records:
        return lines
    seeds = sorted({s for s in df["_seed"] if s is not None})
    if seeds:
        lines.append(f"- Seeds: {', '.join(map(str, seeds))}")
    for label, prefix, wanted in (("Model", "config.model.", ("family", "preset")),
                                  ("Data", "config.data.", None),
                                  ("Training", "config.training.", ("steps", "epochs", "batch_size", "lr",
                                                                    "weight_decay", "device", "precision")),
                                  ("Metrics", "config.metrics.", ("fidelity", "diagnostics"))):
        columns = [c for c in df.columns if c.startswith(prefix) and (wanted is None or c[len(prefix):] in wanted)]
        columns.sort(key=(lambda c: wanted.index(c[len(prefix):])) if wanted is not None else None)
        parts = []
        for column in columns:
            # ties of natural_key (0.001 and 0.0001) fall back on the text: the same order in every process
            values = sorted({plain(v) for v in df[column] if not isnan(v)}, key=lambda v: (natural_key(v), v))
            if values:
                parts.append(f"{column[len(prefix):]} = {' | '.join(values)}")
        if parts:
            lines.append(f"- {label}: " + "; ".join(parts))
    window = training_window_line(records)
    if window:
        lines.append(window)
    keys = setting_keys(df, approach_keys_of(suite))
    if keys:
        lines.append(f"- Varying across settings: {', '.join(keys)} (one block per setting in the tables)")
    variants = variant_keys(df, approach_keys_of(suite))
    if variants:
        lines.append(f"- Varying across approaches: {', '.join(variants)} (`report.approach_keys`: a row names "
                     f"the values that differ from the family's defaults)")
    commits = []
    for record in records:
        provenance = record.get("provenance") or {}
        commit = provenance.get("git_commit") or "unknown"
        commits.append(commit[:12] + (" (uncommitted changes)" if provenance.get("git_dirty") else ""))
    lines.append(f"- Git commit: {_counts(commits)} (runs per commit)")
    failed = [r for r in records if r.get("status") != RunStatus.FINISHED]
    if failed:
        lines += ["", "Runs that did not finish:", ""]
        for record in failed:
            label = ", ".join(f"{k}={plain(v)}" for k, v in (record.get("label") or {}).items())
            reason = ""
            if record.get("traceback"):
                reason = ": " + record["traceback"].strip().splitlines()[-1][:200]
            elif record.get("diverged_at") is not None:
                reason = f": diverged at step {record['diverged_at']}"
            lines.append(f"- `{record['run_id']}` ({label}) — {record.get('status')}{reason}")
    return lines


def training_window_line(records) -> str | None:
    """Which steps the training metrics (train_*) average, from the records' `notes.train_window`: the
    end-of-training window (README "Metrics")."""
    windows = sorted({(*window, (r.get("metrics") or {}).get("steps", window[-1] + 1))
                      for r in records if (window := (r.get("notes") or {}).get("train_window"))})
    if not windows:
        return None
    spans = " | ".join((f"steps {first}-{last}" if first < last else f"step {last}") + f" of {steps}"
                       for first, last, steps in windows)
    return (f"- Training metrics (train_*): end-of-training values, the mean of the values logged over {spans} "
            f"(`training.usage_window`; null: the last 10% of the run)")


def table_lines(tables: list[Table]) -> list[str]:
    lines = ["## Tables", ""]
    if not tables:
        return lines + ["No finished runs with table metrics.", ""]
    for table in tables:
        lines += [f"### {table.title}", "",
                  f"Mean ± half-width of the 95% t-interval over seeds (n = finished seeds; the mean alone when "
                  f"n = 1). Bold: best mean per setting. †: p < {ALPHA} in a paired t-test over seeds against "
                  f"`{table.baseline}`." + (" Rows marked (paper) are the paper's numbers." if table.ref else "")
                  + (" Training metrics are end-of-training values (the window is under What ran)."
                     if any(c.startswith("train_") for c in table.columns) else "")
                  + (f" A row's name gives its model options that differ from the family's defaults (after "
                     f"`+`); `{table.baseline}` alone has the defaults." if _has_variants(table) else ""),
                  "", markdown_table(table), "", f"LaTeX: [{table.stem}.tex]({table.stem}.tex)", ""]
        pvalues = markdown_pvalues(table)
        if pvalues:
            lines += [f"Paired t-test against `{table.baseline}` (scipy.stats.ttest_rel over seeds; p-value and "
                      f"number of pairs; n/a: fewer than 2 pairs or no `{table.baseline}` run in the setting):",
                      "", pvalues, ""]
    return lines


def _has_variants(table: Table) -> bool:
    """Some row of the table is an estimator with model options other than the defaults (`ste + FSQ`)."""
    return any(split_variant(r.approach)[1] for b in table.blocks for r in b.rows if r.kind == "ours")


def figure_lines(suite_directory: Path, paths: list[Path], messages: list[str], drawn: bool) -> list[str]:
    lines = ["## Figures", ""]
    for path in paths:
        relative = path.relative_to(suite_directory) if path.is_relative_to(suite_directory) else path
        lines.append(f"![{path.stem}]({relative})" if path.suffix == ".png" else f"- [{relative}]({relative})")
    lines += [f"- {message}" for message in messages]
    if not paths and not messages:
        lines.append("No figures (no histories recorded)." if drawn else "Figures not drawn (figures=False).")
    return lines + [""]


def fidelity_lines(df: pd.DataFrame, records) -> list[str]:
    lines = ["## Reconstruction fidelity (r-FID, r-IS, r-FVD)", ""]
    by_id = {r["run_id"]: r for r in records}
    finished = df[df["status"] == RunStatus.FINISHED]
    if finished.empty:
        return lines + ["No finished runs.", ""]
    present = [m for m in FIDELITY_METRICS if m in finished.columns]
    reasons: dict[str, int] = {}
    computed: dict[str, int] = {}
    for _, run in finished.iterrows():
        measured = [m for m in present if not isnan(run[m])]
        note = ((by_id.get(run["run_id"], {}).get("notes") or {}).get("fidelity") or "").strip()
        if measured:
            key = f"{', '.join(measured)} ({note or 'computed'})"
            computed[key] = computed.get(key, 0) + 1
            continue
        fidelity_on = run.get("config.metrics.fidelity")
        if note:
            reason = note if "not computed" in note else f"r-FID / r-IS / r-FVD not computed: {note}"
        elif isnan(fidelity_on) or not bool(fidelity_on):
            reason = "r-FID / r-IS / r-FVD not computed: metrics.fidelity is off for these runs"
        else:
            reason = "r-FID / r-IS / r-FVD not computed: the record has no fidelity note"
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason in sorted(reasons):
        lines.append(f"- {reason} ({reasons[reason]} of {len(finished)} finished runs).")
    for key in sorted(computed):
        lines.append(f"- Computed: {key} ({computed[key]} of {len(finished)} finished runs).")
    return lines + ["", "A number appears in an r-FID / r-IS / r-FVD column only where it was measured; otherwise "
                        "the cell shows —.", ""]


def definition_lines(tables: list[Table]) -> list[str]:
    """The registry's definition of every registered metric the tables show."""
    names = [n for n in dict.fromkeys(n for t in tables for n in t.columns) if n in METRICS]
    if not names:
        return []
    lines = ["## Metric definitions", ""]
    for name in names:
        m = metric(name)
        better = f", {m.arrow} better" if m.better else ""
        lines.append(f"- `{name}` ({m.header}{better}): {m.definition}")
    return lines + [""]
