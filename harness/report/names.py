"""The approaches as the paper names them, for tables a paper can take as is; the harness registry name stays
available beside them (`approach_label`, `registry_names`).

Names: the baselines of paper §5.1 and Table 1 ("STE" for the paper's plain VQ-VAE, "Gumbel", "Hessian
Approx.", "Exact Gradients"), the rotation trick (§4), the reflection of appendix A.8, and appendix A.9's
formulas: λRe for the rotation trick and Re + sg(q − Re) for the rotation without norm scaling (Tables 6
and 7), γRe + sg(q − γRe) for the general scaling of A.9.2. Estimators the paper does not name keep their
registry name.
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


def split_approach(approach: str) -> tuple[str, str]:
    """'rotation_gamma (gamma=one)' -> ('rotation_gamma', 'gamma=one'); parameters '' when there are none."""
    name, _, params = approach.partition(" (")
    return name, params[:-1] if params.endswith(")") else params


def paper_name(approach: str, table_ref: str | None = None) -> str:
    """The paper's name of an approach's estimator in the given paper table (its registry name if unnamed)."""
    name = split_approach(approach)[0]
    return TABLE_NAMES.get(table_ref or "", {}).get(name) or PAPER_NAMES.get(name, name)


def approach_labels(approaches: list[str], table_ref: str | None, style: str = "paper") -> dict[str, str]:
    """{approach: its row label} for the approaches of one table. Paper names of one estimator run with
    different parameters get the parameters in parentheses, so no two rows read the same."""
    if style not in NAME_STYLES:
        raise ValueError(f"approach names {style!r}: choose one of {', '.join(NAME_STYLES)}")
    if style == "registry":
        return {a: a for a in approaches}
    named = {a: paper_name(a, table_ref) for a in approaches}
    labels = {}
    for approach, name in named.items():
        params = split_approach(approach)[1]
        shared = sum(other == name for other in named.values()) > 1
        label = f"{name} ({params})" if shared and params else name
        labels[approach] = f"{label} [{split_approach(approach)[0]}]" if style == "both" else label
    return labels


def registry_names(labels: dict[str, str]) -> list[tuple[str, str]]:
    """(label, registry approach) pairs whose label is not the registry name itself, in the labels' order."""
    return [(label, approach) for approach, label in labels.items() if label != approach]
