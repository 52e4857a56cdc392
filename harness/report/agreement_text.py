"""report.md's "Agreement with the paper" section: per paper table or section the suite names, the paper's
claim, the counts line and one row per claim with our means, the paired difference, the seeds behind it and
the verdict (verdicts.py)."""
from __future__ import annotations

from .. import paper_numbers
from .formatting import fmt_interval, fmt_paper, fmt_ratio, fmt_value
from .metrics import metric
from .settings import paper_refs, unknown_refs
from .verdicts import Outcome, Verdict, counts_line

RULE = ("A claim **agrees** with the paper only where our evidence is significant: the 95% t-interval of the "
        "paired difference (approach − other, per seed, over the seeds both finished) excludes zero in the "
        "paper's direction. It **disagrees** where the interval excludes zero the other way, and is "
        "**inconclusive** otherwise, also with fewer than 2 paired seeds. Our setting is a stand-in for the "
        "paper's where the profile runs at a smaller scale: the sizes of the numbers are not comparable, only "
        "their order. `tie in paper`: the paper prints equal numbers, so it claims no direction.")


def _setting_label(ref: str, setting: str) -> str:
    return paper_numbers.reference(ref)["settings"][setting]["label"]


def _difference(verdict: Verdict) -> str:
    d, name = verdict.difference, verdict.claim.metric
    if d is None or d.n == 0:
        return "—"
    return fmt_value(d.mean, name) if d.low is None else fmt_interval(d.mean, d.low, d.high, name)


def _seeds(verdict: Verdict) -> str:
    d = verdict.difference
    if d is None:
        return "—"
    return f"{d.n} ({', '.join(str(s) for s in d.seeds)})" if d.n else "0"


def _row(verdict: Verdict, ratio_mode: bool) -> str:
    claim = verdict.claim
    name = claim.metric
    measured = verdict.ours_approach is not None
    if ratio_mode:
        paper = f"{claim.baseline} ≈ {claim.ratio:g}× {claim.approach} ({claim.when})"
        ours = (f"{claim.baseline} = {fmt_ratio(verdict.ours_ratio)} {claim.approach} "
                f"({fmt_value(verdict.ours_baseline, name)} vs {fmt_value(verdict.ours_approach, name)})"
                if measured else "—")
    else:
        paper = (f"{fmt_paper(claim.paper_approach, name)} vs {fmt_paper(claim.paper_baseline, name)} "
                 f"({claim.direction})")
        ours = (f"{fmt_value(verdict.ours_approach, name)} vs {fmt_value(verdict.ours_baseline, name)}"
                if measured else "—")
    outcome = str(verdict.outcome) + (f" ({verdict.why})" if verdict.why else "")
    return (f"| {_setting_label(claim.ref, claim.setting)} | {metric(name).label} | {claim.approach} vs "
            f"{claim.baseline} | {paper} | {ours} | {_difference(verdict)} | {_seeds(verdict)} | {outcome} |")


def _ref_lines(ref: str, verdicts: list[Verdict]) -> list[str]:
    spec = paper_numbers.reference(ref)
    lines = [f"### {spec['title']}", "", f"The paper: {spec.get('claim') or spec.get('statement')}", ""]
    if not verdicts:
        return lines + ["The paper reports no numbers to compare with here.", ""]
    lines += [f"Summary: {counts_line(verdicts)}.", ""]
    lines += unresolved_lines(verdicts)
    not_run: dict[str, int] = {}
    rows = []
    ratio_mode = any(v.claim.ratio is not None for v in verdicts)
    for verdict in verdicts:
        if verdict.why == "setting not run":
            not_run[verdict.claim.setting] = not_run.get(verdict.claim.setting, 0) + 1
        else:
            rows.append(_row(verdict, ratio_mode))
    if rows:
        lines += [f"| Setting | Metric | Comparison | Paper | {'Ours' if ratio_mode else 'Ours (mean)'} | "
                  "Δ ours, 95% CI | Seeds (paired) | Verdict |", "|---|---|---|---|---|---|---|---|"]
        lines += rows + [""]
    for setting, count in not_run.items():
        lines.append(f"- Not run in these results: {_setting_label(ref, setting)} ({count} claims not measured).")
    if not_run:
        lines.append("")
    return lines


def unresolved_lines(verdicts: list[Verdict]) -> list[str]:
    """Where claims were measured but none is significant either way: the results do not resolve the effect."""
    inconclusive = sum(v.outcome == Outcome.INCONCLUSIVE for v in verdicts)
    if not inconclusive or any(v.outcome in (Outcome.AGREE, Outcome.DISAGREE) for v in verdicts):
        return []
    return [f"**Not resolved.** None of the {inconclusive} measured claims is significant at these seeds and this "
            "scale (no 95% interval of a paired difference excludes zero): these results neither reproduce nor "
            "contradict the paper here, whichever way the means point. More seeds or longer runs are needed.", ""]


def agreement_lines(verdicts: list[Verdict], suite) -> list[str]:
    lines = ["## Agreement with the paper", ""]
    table_refs, section_refs = paper_refs(suite)
    unknown = unknown_refs(suite)
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
        return lines + ["The suite names no paper table or section (`paper: {table: ...}`); nothing to compare.",
                        ""]
    lines += [RULE, ""]
    for ref in table_refs + section_refs:
        lines += _ref_lines(ref, [v for v in verdicts if v.claim.ref == ref])
    return lines
