"""Does our evidence agree with the paper? One verdict per claim the paper's numbers make.

The claims: in each setting of a paper table the suite names (paper Tables 1-7), the paper's proposed
approach against every other approach it ran, per metric, in the direction the paper's numbers point (better,
worse, or a tie, where the paper claims no direction); for an appendix section with a ratio (paper A.8), that
the reference approach is the better one.

The verdict needs significance, over the seeds both approaches finished: the paired difference (ours −
other, per seed) and its 95% t-interval. A claim *agrees* where the interval excludes zero in the paper's
direction, *disagrees* where it excludes zero the other way, and is *inconclusive* otherwise (also with
fewer than 2 paired seeds). A claim is *not measured* where the setting, an approach or the metric was not
run, and a *tie in paper* where the paper prints equal numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .. import paper_numbers
from .metrics import metric
from .settings import paper_refs
from .stats import PairedDifference, paired_difference
from .tables import Table, metric_cells


class Outcome(str, Enum):
    AGREE = "agree"
    DISAGREE = "disagree"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"
    TIE_IN_PAPER = "tie in paper"

    def __str__(self) -> str:
        return self.value


#: The outcomes a verdict on a direction can have, in the order the counts line names them.
DECIDED = (Outcome.AGREE, Outcome.DISAGREE, Outcome.INCONCLUSIVE)


def direction(a: float, b: float, better: str) -> str:
    """'better', 'worse' or 'tie': how `a` compares with `b` when `better` is 'up' or 'down'."""
    if a == b:
        return "tie"
    return "better" if (a > b) == (better == "up") else "worse"


@dataclass(frozen=True)
class PaperClaim:
    """What the paper says about `approach` against `baseline` on `metric` in one setting of a table or
    section: its direction ('better' / 'worse' / 'tie' in the metric's better direction), with the paper's two
    numbers (tables) or the ratio baseline ≈ ratio × approach that the paper reads off its curves (A.8)."""

    ref: str
    setting: str
    metric: str
    approach: str
    baseline: str
    direction: str
    paper_approach: float | None = None
    paper_baseline: float | None = None
    ratio: float | None = None
    when: str = ""


@dataclass(frozen=True)
class Verdict:
    """A claim and our evidence: the means over finished seeds and the paired difference approach − baseline."""

    claim: PaperClaim
    outcome: Outcome
    why: str = ""  # why not measured / inconclusive
    ours_approach: float | None = None
    ours_baseline: float | None = None
    difference: PairedDifference | None = None

    @property
    def ours_ratio(self) -> float | None:
        """Our baseline's mean over the approach's (the A.8 ratio); None when not measured or zero."""
        if not self.ours_approach:
            return None
        return self.ours_baseline / self.ours_approach


def claims(table_id: str) -> list[PaperClaim]:
    """What the paper's numbers say, per setting and metric: the proposed approach vs each other approach
    (the table's baseline first). Only the paper's own runs count (kind 'run', not the numbers it quotes
    from other papers); metrics with '—' on either side are skipped."""
    table = paper_numbers.TABLES[table_id]
    proposed = table["proposed"]
    out = []
    for setting in table["settings"]:
        mine = paper_numbers.rows(table_id, setting, proposed)
        mine = [r for r in mine if r["kind"] == "run"]
        if not mine:
            continue
        others = [r for r in paper_numbers.rows(table_id, setting) if r["kind"] == "run" and r["approach"] != proposed]
        others.sort(key=lambda r: r["approach"] != table["baseline"])
        for other in others:
            for name in table["columns"]:
                a, b = mine[0]["values"].get(name), other["values"].get(name)
                if a is not None and b is not None:
                    out.append(PaperClaim(table_id, setting, name, proposed, other["approach"],
                                          direction(a, b, metric(name).better), a, b))
    return out


def section_claims(section_id: str) -> list[PaperClaim]:
    """A section's ratios: approach ≈ ratio × reference on a lower-is-better loss, so the reference is the
    better one (paper A.8: the reflection's validation loss ≈ 2-3× the rotation trick's)."""
    return [PaperClaim(section_id, r["setting"], r["metric"], r["reference"], r["approach"], "better",
                       ratio=r["ratio"], when=r["when"])
            for r in paper_numbers.SECTIONS[section_id]["ratios"]]


def decide(paper_direction: str, difference: PairedDifference, better: str) -> tuple[Outcome, str]:
    """The verdict on a claim from the paired difference approach − baseline (see the module docstring)."""
    if difference.n < 2:
        return Outcome.INCONCLUSIVE, f"{difference.n} paired seed{'s' if difference.n != 1 else ''}, 2 needed"
    sign = difference.sign() * (1 if better == "up" else -1)
    if sign == 0:
        return Outcome.INCONCLUSIVE, "the 95% CI includes 0"
    ours = "better" if sign > 0 else "worse"
    return (Outcome.AGREE, "") if ours == paper_direction else (Outcome.DISAGREE, "")


def judge(claim: PaperClaim, tables: list[Table]) -> Verdict:
    """Our verdict on one claim, from the block that stands for the claim's paper setting."""
    block = next((b for t in tables for b in t.blocks if b.ref == claim.ref and b.setting == claim.setting), None)
    tie = claim.direction == "tie"
    unmeasured = Outcome.TIE_IN_PAPER if tie else Outcome.NOT_MEASURED
    if block is None:
        return Verdict(claim, unmeasured, "setting not run")
    missing = [name for name in (claim.approach, claim.baseline) if block.ours(name) is None]
    if missing:
        return Verdict(claim, unmeasured, f"{' and '.join(missing)} not run (or no run finished)")
    cell_a, cell_b = metric_cells(block, [claim.approach, claim.baseline], claim.metric)
    if cell_a.n == 0 or cell_b.n == 0:
        return Verdict(claim, unmeasured, f"{claim.metric} not recorded")
    difference = paired_difference(cell_a.values, cell_b.values)
    outcome, why = (Outcome.TIE_IN_PAPER, "") if tie else decide(claim.direction, difference,
                                                                  metric(claim.metric).better)
    return Verdict(claim, outcome, why, cell_a.mean, cell_b.mean, difference)


def agreement(tables: list[Table], suite) -> list[Verdict]:
    """A verdict for every claim of the paper tables and sections the suite names."""
    table_refs, section_refs = paper_refs(suite)
    found = [c for ref in table_refs for c in claims(ref)] + [c for ref in section_refs for c in section_claims(ref)]
    return [judge(claim, tables) for claim in found]


def counts_line(verdicts: list[Verdict]) -> str:
    """'N agree, M disagree, K inconclusive' plus the claims not measured and the paper's ties, when any."""
    text = ", ".join(f"{sum(v.outcome == o for v in verdicts)} {o}" for o in DECIDED)
    rest = [f"{n} {o}" for o in (Outcome.NOT_MEASURED, Outcome.TIE_IN_PAPER)
            if (n := sum(v.outcome == o for v in verdicts))]
    return text + (f" ({', '.join(rest)})" if rest else "")
