"""Verdicts need significance (harness/report/verdicts.py), on constructed records: a claim agrees with the
paper only where the 95% interval of the paired difference over seeds excludes zero in the paper's direction,
disagrees where it excludes zero the other way, and is inconclusive otherwise (also with fewer than 2 paired
seeds), whatever way the means point."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from harness import report, store
from harness.suite import load_suite

#: The paper's Table 1, Euclidean 1024×32: rotation's quantization error 5.1e-4 < the STE's 5.9e-3 (better).
CLAIM = ("euclidean_1024x32", "train_quant_error", "ste")


def verdict_for(tmp_path, quant_error: dict, seeds: list[int]) -> report.Verdict:
    """Records of a two-approach suite standing for Table 1's Euclidean 1024×32 setting with the given
    train_quant_error per (approach, seed); the verdict on CLAIM, after checking report.md states it."""
    raw = {"name": "verdicts", "seeds": seeds, "default_profile": "cpu",
           "base": {"model": {"family": "vqvae", "preset": "cpu"}, "data": {"name": "natural_patches"},
                    "training": {"steps": 5}},
           "grid": {"estimator.name": ["ste", "rotation"]}, "profiles": {"cpu": {}},
           "paper": {"table": "table1", "settings": [
               {"table": "table1", "setting": "euclidean_1024x32", "match": {"model.family": "vqvae"}}]}}
    path = tmp_path / "verdicts.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    suite = load_suite(path)
    for spec in suite.runs:
        value = quant_error[spec.config.estimator.name][spec.config.seed]
        store.write_json(store.run_dir(tmp_path / "out", spec.suite, spec.run_id) / store.RECORD,
                         {"run_id": spec.run_id, "suite": spec.suite, "label": spec.label, "config": spec.config.resolved,
                          "status": "finished", "metrics": {"train_quant_error": value}})
    suite_dir = store.suite_dir(tmp_path / "out", suite.name)
    result = report.write_suite_report(suite_dir, suite=suite, figures=False)
    verdicts = report.agreement(report.build_tables(store.load_results(suite_dir), suite), suite)
    verdict = next(v for v in verdicts if (v.claim.setting, v.claim.metric, v.claim.baseline) == CLAIM)
    md = (suite_dir / "report.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith("| Euclidean") and "| Quant. err. ↓ |" in l)
    assert line.endswith(f"| {len(seeds)} ({', '.join(map(str, seeds))}) | {verdict.outcome}"
                         + (f" ({verdict.why}) |" if verdict.why else " |"))  # the seeds behind it
    assert f"Summary: {report.counts_line(verdicts)}." in md
    assert report.counts_line(verdicts) in result["summary"]
    return verdict


def test_clear_effect_in_the_papers_direction_agrees(tmp_path):
    seeds = [0, 1, 2]
    verdict = verdict_for(tmp_path, {"ste": {0: 5.0e-3, 1: 6.0e-3, 2: 5.5e-3},
                                     "rotation": {0: 5.0e-4, 1: 6.5e-4, 2: 5.5e-4}}, seeds)
    assert verdict.outcome == report.Outcome.AGREE and verdict.why == ""
    d = np.array([-4.5e-3, -5.35e-3, -4.95e-3])  # rotation − ste per seed
    low, high = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert verdict.difference.seeds == (0, 1, 2)
    assert (verdict.difference.low, verdict.difference.high) == (pytest.approx(low), pytest.approx(high))
    assert high < 0  # lower is better for the quantization error: rotation is the better one


def test_clear_effect_against_the_papers_direction_disagrees(tmp_path):
    verdict = verdict_for(tmp_path, {"ste": {0: 5.0e-4, 1: 6.5e-4, 2: 5.5e-4},
                                     "rotation": {0: 5.0e-3, 1: 6.0e-3, 2: 5.5e-3}}, [0, 1, 2])
    assert verdict.outcome == report.Outcome.DISAGREE
    assert verdict.difference.low > 0


def test_noise_with_two_seeds_is_inconclusive_even_where_the_means_point_the_papers_way(tmp_path):
    # rotation's mean is lower (the paper's direction): one seed favours it, the other is a tie, p = 0.5;
    # the report used to count this as reproduced
    values = {"ste": {0: 2.0e-3, 1: 2.0e-3}, "rotation": {0: 1.0e-3, 1: 2.0e-3}}
    verdict = verdict_for(tmp_path, values, [0, 1])
    assert verdict.ours_approach < verdict.ours_baseline
    assert stats.ttest_rel([1.0e-3, 2.0e-3], [2.0e-3, 2.0e-3]).pvalue == pytest.approx(0.5)
    assert verdict.outcome == report.Outcome.INCONCLUSIVE and verdict.why == "the 95% CI includes 0"
    assert verdict.difference.low < 0 < verdict.difference.high


def test_a_section_with_no_significant_claim_says_it_is_not_resolved(tmp_path):
    verdict_for(tmp_path, {"ste": {0: 2.0e-3, 1: 2.0e-3}, "rotation": {0: 1.0e-3, 1: 2.0e-3}}, [0, 1])
    md = (tmp_path / "out" / "verdicts" / "report.md").read_text()
    assert "**Not resolved.** None of the" in md and "neither reproduce nor contradict the paper" in md


def test_a_section_with_a_significant_claim_is_resolved(tmp_path):
    verdict_for(tmp_path, {"ste": {0: 5.0e-3, 1: 6.0e-3, 2: 5.5e-3},
                           "rotation": {0: 5.0e-4, 1: 6.5e-4, 2: 5.5e-4}}, [0, 1, 2])
    assert "Not resolved" not in (tmp_path / "out" / "verdicts" / "report.md").read_text()


def test_one_paired_seed_is_inconclusive(tmp_path):
    verdict = verdict_for(tmp_path, {"ste": {0: 5.0e-3}, "rotation": {0: 5.0e-4}}, [0])
    assert verdict.outcome == report.Outcome.INCONCLUSIVE and verdict.why == "1 paired seed, 2 needed"
    assert verdict.difference.low is None


def test_paired_difference_matches_the_paired_t_test():
    a, b = {0: 1.0, 1: 2.2, 2: 2.9, 3: 4.4}, {0: 0.5, 1: 1.0, 2: 2.5, 3: 3.0, 4: 9.0}  # seed 4 has no pair
    d = report.paired_difference(a, b)
    assert d.seeds == (0, 1, 2, 3) and d.mean == pytest.approx(0.875)
    p, pairs = report.paired_p(a, b)
    assert pairs == 4 and (d.sign() != 0) == (p < 0.05)
    flat = report.paired_difference({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})  # the same difference for both seeds
    assert (flat.low, flat.high, flat.sign()) == (0.5, 0.5, 1)
