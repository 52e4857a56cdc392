"""How runs group into a table's blocks and rows: the setting (what varies across the suite other than the
estimator, the seed and the suite's `report.approach_keys`), the approach (estimator + its parameters, then its
variant: the approach keys' values that differ from the family's defaults), the seed, and which paper setting a
block stands for (the suite's `paper: {settings: ...}` rules first, then harness.paper_numbers' defaults).
"""
from __future__ import annotations

from dataclasses import MISSING, fields

import pandas as pd

import models

from .. import paper_numbers
from .formatting import as_list, isnan, natural_key, plain, same
from .names import VARIANT_JOIN, option_name, split_variant, with_variant

#: Row order inside a block (the paper lists the baselines first and the rotation trick last).
APPROACH_ORDER = ["ste", "gumbel", "hessian", "exact", "reflection", "rotation_unscaled", "rotation_gamma",
                  "rotation_through_r", "rotation_radial_removed", "rotation"]


def approach_of(row: pd.Series, estimator_columns: list[str]) -> str:
    """The estimator name plus its parameters, e.g. 'rotation_gamma (gamma=inverse_sq_distance)'."""
    name = row.get("config.estimator.name")
    name = "—" if isnan(name) else str(name)
    params = [(c[len("config.estimator."):], row[c]) for c in estimator_columns
              if c != "config.estimator.name" and not isnan(row[c])]
    if not params:
        return name
    return f"{name} ({', '.join(f'{k}={plain(v)}' for k, v in sorted(params))})"


def approach_sort_key(approach: str):
    """Rows grouped by variant (the default model options first), each group in APPROACH_ORDER."""
    estimator, variant = split_variant(approach)
    base = estimator.split(" ")[0]
    rank = APPROACH_ORDER.index(base) if base in APPROACH_ORDER else len(APPROACH_ORDER)
    return natural_key(variant.casefold()), rank, natural_key(approach)


def approach_keys_of(suite) -> list[str]:
    """The model keys the suite's `report.approach_keys` moves from the block (setting) to the row."""
    return [str(key) for key in as_list((suite.report if suite is not None else {}).get("approach_keys"))]


def setting_keys(df: pd.DataFrame, approach_keys=()) -> list[str]:
    """Label keys (grid/zip) that vary across the runs, other than the estimator's, the seed and the
    approach keys."""
    return [key for key in varying_keys(df) if key not in approach_keys]


def variant_keys(df: pd.DataFrame, approach_keys) -> list[str]:
    """The approach keys that vary across the runs, in the suite's order: the keys a row's variant names."""
    varying = varying_keys(df)
    return [key for key in approach_keys if key in varying]


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Label keys (grid/zip) that vary across the runs, other than the estimator's and the seed."""
    keys = []
    for column in df.columns:
        if not column.startswith("label.") or column == "label.seed":
            continue
        key = column[len("label."):]
        if key == "estimator" or key.startswith("estimator."):
            continue
        if df[column].map(plain).nunique(dropna=False) > 1:
            keys.append(key)
    return keys


def setting_descriptor(row: pd.Series, keys: list[str], columns: list[str]) -> str:
    """'model.lookup=cosine, model.latent_dim=3': the run's values of the varying keys."""
    parts = []
    for key in keys:
        column = f"config.{key}"
        if column in columns:
            if not isnan(row[column]):
                parts.append(f"{key}={plain(row[column])}")
            continue
        for sub in sorted(c for c in columns if c.startswith(column + ".")):  # a whole section (data: {...})
            if not isnan(row[sub]):
                parts.append(f"{sub[len('config.'):]}={plain(row[sub])}")
    return ", ".join(parts)


def family_default(family, key: str):
    """(True, the default) of a model key in the family's params (models/<family>.py), (False, None) when
    the family has no such key or no default."""
    if family not in models.family_names():
        return False, None
    for f in fields(models.get_family(family).Params):
        if f"model.{f.name}" == key:
            if f.default is not MISSING:
                return True, f.default
            return (True, f.default_factory()) if f.default_factory is not MISSING else (False, None)
    return False, None


def variant_of(row: pd.Series, keys: list[str]) -> str:
    """The run's values of the approach keys that differ from its family's defaults, as names.option_name
    names them ('FSQ', 'affine + dead-code replacement (window 5)'); '' with the default options."""
    parts = []
    for key in keys:
        value = row.get(f"config.{key}")
        known, default = family_default(row.get("config.model.family"), key)
        if not isnan(value) and not (known and same(value, default)):
            parts.append(option_name(key, plain(value)))
    return VARIANT_JOIN.join(parts)


def seed_of(row: pd.Series) -> int | None:
    seed = row.get("label.seed")
    if isnan(seed):
        seed = row.get("config.seed")
    return None if isnan(seed) else int(seed)


def annotate(df: pd.DataFrame, approach_keys=()) -> pd.DataFrame:
    """The results with `_approach` (estimator, parameters and variant), `_setting` and `_seed` columns."""
    columns = list(df.columns)
    estimator_columns = sorted(c for c in columns if c.startswith("config.estimator."))
    keys = setting_keys(df, approach_keys)
    variants = variant_keys(df, approach_keys)
    return df.assign(_approach=[with_variant(approach_of(row, estimator_columns), variant_of(row, variants))
                                for _, row in df.iterrows()],
                     _setting=[setting_descriptor(row, keys, columns) for _, row in df.iterrows()],
                     _seed=[seed_of(row) for _, row in df.iterrows()])


def paper_refs(suite) -> tuple[list[str], list[str]]:
    """(paper table ids, paper section ids) the suite names that harness.paper_numbers holds."""
    meta = suite.paper if suite is not None else {}
    tables = [t for t in as_list(meta.get("table")) if t in paper_numbers.TABLES]
    sections = [s for s in as_list(meta.get("section")) if s in paper_numbers.SECTIONS]
    return tables, sections


def unknown_refs(suite) -> list[str]:
    """What the suite names under `paper:` that harness.paper_numbers holds no numbers for (e.g. A.2)."""
    meta = suite.paper if suite is not None else {}
    named = as_list(meta.get("table")) + as_list(meta.get("section"))
    return [str(r) for r in named if r not in paper_numbers.TABLES and r not in paper_numbers.SECTIONS]


def setting_rules(suite, refs: list[str]) -> list[tuple[str, str, list[dict]]]:
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
        rules.append((ref, setting, [m for m in as_list(entry.get("match")) if isinstance(m, dict)]))
    for ref in refs:
        for setting, spec in paper_numbers.reference(ref)["settings"].items():
            rules.append((ref, setting, [spec["match"]]))
    return rules


def matches(runs: pd.DataFrame, match: dict) -> bool:
    """Every run has every `match` value (dotted config keys)."""
    for key, wanted in match.items():
        column = f"config.{key}"
        if column not in runs.columns or not all(same(value, wanted) for value in runs[column]):
            return False
    return True
