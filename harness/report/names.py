"""The approaches as the paper names them, for tables a paper can take as is; the harness registry name stays
available beside them (`approach_label`, `registry_names`).

Names: the baselines of paper §5.1 and Table 1 ("STE" for the paper's plain VQ-VAE, "Gumbel", "Hessian
Approx.", "Exact Gradients"), the rotation trick (§4), the reflection of appendix A.8, and appendix A.9's
formulas: λRe for the rotation trick and Re + sg(q − Re) for the rotation without norm scaling (Tables 6
and 7), γRe + sg(q − γRe) for the general scaling of A.9.2. Estimators the paper does not name keep their
registry name.

A suite's `report.approach_keys` (model options such as the quantizer) make an approach of an estimator and
its variant, the options that differ from the family's defaults: 'ste + FSQ', 'rotation + affine',
'diveq + dead-code replacement (window 5)'. The variant follows the estimator's name in every style.
"""
from __future__ import annotations

#: estimator registry name -> the paper's name
PAPER_NAMES = {
    "ste": "STE",
    "gumbel": "Gumbel",
    "hessian": "Hessian Approx.",
    "exact": "Exact Gradients",
    "reflection": "Reflection",
    "rotation": "Rotation Trick",
    "rotation_unscaled": "Re + sg(q − Re)",
    "rotation_gamma": "γRe + sg(q − γRe)",
}

#: Where a paper table names an approach otherwise (A.9's Tables 6 and 7 write the rotation trick as λRe).
TABLE_NAMES = {"table6": {"rotation": "λRe"}, "table7": {"rotation": "λRe"}}

#: The paper's formula names as LaTeX math (the other names are plain text).
LATEX_NAMES = {"λRe": r"$\lambda Re$", "Re + sg(q − Re)": r"$Re + \mathrm{sg}(q - Re)$",
               "γRe + sg(q − γRe)": r"$\gamma Re + \mathrm{sg}(q - \gamma Re)$"}

#: How a table names its approaches: the paper's name, the registry's, or the paper's with the registry's.
NAME_STYLES = ("paper", "registry", "both")

#: Between an approach's estimator and its variant, and between the variant's options: 'ste + FSQ'.
VARIANT_JOIN = " + "

#: How a variant names a model option's value (`report.approach_keys`); other values read '<key> <value>'
#: ('lookup cosine'). The methods' sources are in README "Quantizer options".
OPTION_NAMES = {
    "model.quantizer": {"fsq": "FSQ", "lfq": "LFQ"},
    "model.reparameterization": {"affine": "affine", "affine_running": "affine (running statistics)",
                                 "simvq": "SimVQ"},
}
#: Options named by a pattern of their value.
OPTION_PATTERNS = {"model.dead_code_window": "dead-code replacement (window {})"}


def option_name(key: str, value: str) -> str:
    """A model option's value as a variant names it: ('model.quantizer', 'fsq') -> 'FSQ'."""
    if value in OPTION_NAMES.get(key, {}):
        return OPTION_NAMES[key][value]
    if key in OPTION_PATTERNS:
        return OPTION_PATTERNS[key].format(value)
    return f"{key.rsplit('.', 1)[-1].replace('_', ' ')} {value}"


def split_variant(approach: str) -> tuple[str, str]:
    """'ste + FSQ' -> ('ste', 'FSQ'); the variant is '' for an estimator with the default model options."""
    estimator, _, variant = approach.partition(VARIANT_JOIN)
    return estimator, variant


def with_variant(label: str, variant: str) -> str:
    """The label of an estimator followed by the variant, if any."""
    return f"{label}{VARIANT_JOIN}{variant}" if variant else label


def split_approach(approach: str) -> tuple[str, str]:
    """'rotation_gamma (gamma=one)' -> ('rotation_gamma', 'gamma=one'); parameters '' when there are none.
    The variant, if any, is left out: 'rotation (gamma=one) + SimVQ' -> ('rotation', 'gamma=one')."""
    name, _, params = split_variant(approach)[0].partition(" (")
    return name, params[:-1] if params.endswith(")") else params


def paper_name(approach: str, table_ref: str | None = None) -> str:
    """The paper's name of an approach's estimator in the given paper table (its registry name if unnamed)."""
    name = split_approach(approach)[0]
    return TABLE_NAMES.get(table_ref or "", {}).get(name) or PAPER_NAMES.get(name, name)


def approach_labels(approaches: list[str], table_ref: str | None, style: str = "paper") -> dict[str, str]:
    """{approach: its row label} for the approaches of one table. Paper names of one estimator run with
    different parameters get the parameters in parentheses, so no two rows read the same; the variant
    follows ('STE + FSQ')."""
    if style not in NAME_STYLES:
        raise ValueError(f"approach names {style!r}: choose one of {', '.join(NAME_STYLES)}")
    if style == "registry":
        return {a: a for a in approaches}
    estimators = list(dict.fromkeys(split_variant(a)[0] for a in approaches))
    named = {e: paper_name(e, table_ref) for e in estimators}
    labels = {}
    for estimator, name in named.items():
        params = split_approach(estimator)[1]
        shared = sum(other == name for other in named.values()) > 1
        label = f"{name} ({params})" if shared and params else name
        labels[estimator] = f"{label} [{split_approach(estimator)[0]}]" if style == "both" else label
    return {a: with_variant(labels[split_variant(a)[0]], split_variant(a)[1]) for a in approaches}


def registry_names(labels: dict[str, str]) -> list[tuple[str, str]]:
    """(label, registry approach) pairs whose label is not the registry name itself, in the labels' order."""
    return [(label, approach) for approach, label in labels.items() if label != approach]
