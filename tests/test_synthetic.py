"""The synthetic problems (models/synthetic/), their suites, typed artifacts and figures (harness/figures.py).

Each suite (appendix_a2, appendix_a4, figures) runs once, through run-suite, into a temporary results folder;
the tests read its records and artifacts. Paper claims checked: A.2 (Figure 8), A.4 (Figure 10), §3 Figure 2
and §4.3 Figures 4-5. The whole file takes seconds on two CPU cores.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import estimators
import models.synthetic  # noqa: F401  (registers the families until models/__init__.py imports it)
from harness import store
from harness.status import RunStatus
from harness.cli import run_suite_main
from harness.diagnostics import supports_diagnostics
from harness.report.stats import paired_difference
from harness.figures import FIGURES
from harness.config import RunConfig
from harness.suite import SuiteError, load_suite
from harness.train import train_run
from models.synthetic import (HIMMELBLAU_MINIMA, GradientFieldArtifacts, Himmelblau, HimmelblauArtifacts,
                              HimmelblauParams, PointsShift, PointsShiftParams, PushPullArtifacts,
                              ShiftCosineArtifacts, Toy2DField, Toy2DFieldParams, gradient_field, himmelblau)

SUITES = Path(__file__).resolve().parent.parent / "suites"
SUITE_FIGURES = {"appendix_a2": ["himmelblau_panels"], "appendix_a4": ["shift_cosine"],
                 "figures": ["gradient_fields", "push_pull"]}


@pytest.fixture(scope="module")
def one_thread():
    """The problems are tiny: one thread avoids OpenMP overhead that dominates on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results(tmp_path_factory, one_thread):
    """results(suite) -> (suite folder, results table), running the suite through run-suite once."""
    out = tmp_path_factory.mktemp("results")
    cache: dict[str, tuple[Path, object]] = {}

    def get(name: str):
        if name not in cache:
            code = run_suite_main([str(SUITES / f"{name}.yaml"), "--out", str(out), "--no-progress"])
            assert code == 0
            directory = store.suite_dir(out, name)
            df = store.load_results(directory)
            assert (df["status"] == RunStatus.FINISHED).all()
            cache[name] = (directory, df)
        return cache[name]

    return get


def artifacts(directory: Path, run_id: str) -> dict:
    return json.loads((directory / "runs" / run_id / store.ARTIFACTS).read_text())


def by_label(directory: Path, df, *columns: str) -> dict:
    """{(values of columns...): artifacts} for every run."""
    return {tuple(row[c] for c in columns): artifacts(directory, row["run_id"]) for _, row in df.iterrows()}


# -- the dataset and the suite checks -------------------------------------------------------------------

def test_the_synthetic_problems_read_no_dataset(tmp_path):
    """They own their points: no data section, batch None at every step, evaluation on no batches."""
    for name in SUITE_FIGURES:
        for spec in load_suite(SUITES / f"{name}.yaml").runs:
            assert spec.config.data is None and spec.config.resolved["data"] == {}
    spec = load_suite(SUITES / "appendix_a2.yaml", overrides=["training.steps=3"]).runs[0]
    seen = []
    real_step, real_evaluate = Himmelblau.training_step, Himmelblau.evaluate

    def step(self, batch, ctx, optimizers):
        seen.append(batch)
        return real_step(self, batch, ctx, optimizers)

    def evaluate(self, batches):
        seen.append(list(batches))
        return real_evaluate(self, batches)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Himmelblau, "training_step", step)
        patch.setattr(Himmelblau, "evaluate", evaluate)
        result = train_run(spec.config, tmp_path / "run", progress=False)
    assert result.status == "finished" and result.step == 3
    assert seen == [None, None, None, []]


def test_suites_refuse_data_epochs_fidelity_and_sampling_for_the_synthetic_problems():
    for name in SUITE_FIGURES:
        suite = load_suite(SUITES / f"{name}.yaml")
        assert suite.runs and suite.report["figures"] == SUITE_FIGURES[name]
        assert set(load_suite(SUITES / f"{name}.yaml", profile="paper").raw["profiles"]) == {"cpu", "paper"}
    with pytest.raises(SuiteError, match="owns its inputs and reads no dataset: remove the data section"):
        load_suite(SUITES / "appendix_a2.yaml", overrides=["data.name=digits"])
    with pytest.raises(SuiteError, match="set in steps, not epochs"):
        load_suite(SUITES / "appendix_a2.yaml", overrides=["training.steps=null", "training.epochs=1"])
    with pytest.raises(SuiteError, match="no images to reconstruct"):
        load_suite(SUITES / "appendix_a2.yaml", overrides=["metrics.fidelity=true"])
    with pytest.raises(SuiteError, match="cannot be used with family"):
        load_suite(SUITES / "appendix_a2.yaml", overrides=["estimator.name=gumbel"])


def test_points_families_have_no_gradient_diagnostics():
    for family, params in ((Himmelblau, HimmelblauParams()), (PointsShift, PointsShiftParams()),
                           (Toy2DField, Toy2DFieldParams())):
        assert not supports_diagnostics(family(params, estimators.get("rotation")))


# -- A.2: Himmelblau --------------------------------------------------------------------------------------

def test_himmelblau_same_initialisation_for_both_estimators(results):
    directory, df = results("appendix_a2")
    runs = by_label(directory, df, "config.seed", "config.estimator.name")
    seeds = sorted({seed for seed, _ in runs})
    assert len(seeds) >= 2
    for seed in seeds:
        ste, rotation = runs[(seed, "ste")], runs[(seed, "rotation")]
        assert ste["initial_points"] == rotation["initial_points"]
        assert ste["initial_codebook"] == rotation["initial_codebook"]
        assert ste["snapshots"][0]["points"] != rotation["snapshots"][0]["points"]  # the estimators do differ
    assert runs[(seeds[0], "ste")]["initial_points"] != runs[(seeds[1], "ste")]["initial_points"]


def test_himmelblau_snapshots_and_progress(results):
    directory, df = results("appendix_a2")
    for art in by_label(directory, df, "run_id").values():
        assert [s["step"] for s in art["snapshots"]] == [33, 66, 100]
        assert art["updates"] == 100
        assert art["minima"][0] == [3.0, 2.0] and len(art["minima"]) == 4
        final = art["snapshots"][-1]
        # both estimators reduce distortion and the objective at the codes by an order of magnitude
        assert final["distortion"] < 0.2 * art["initial"]["distortion"]
        assert final["objective_codes"] < 0.2 * art["initial"]["objective_codes"]
    assert {"val_distortion", "val_objective_points", "val_objective_codes", "val_usage"} <= set(df.columns)


def test_appendix_a2_judges_its_claims_on_twenty_seeds():
    suite = load_suite(SUITES / "appendix_a2.yaml")
    assert sorted({spec.config.seed for spec in suite.runs}) == list(range(20))


#: Paper A.2's two claims on the state after 100 updates, each a quantity the rotation trick makes lower.
A2_CLAIMS = {"distortion": "the points cluster more tightly around their codes",
             "objective_codes": "the codes reach the minima sooner (mean f(q) over the points)"}


@pytest.mark.parametrize("quantity", sorted(A2_CLAIMS))
@pytest.mark.xfail(strict=True, reason=(
    "Paper A.2 claims that after 100 updates the rotation trick has the lower distortion and the lower mean "
    "objective at the codes. With suites/appendix_a2.yaml's set-up (every choice the paper leaves open is "
    "stated there) neither holds over 20 seeds: the paired difference rotation - STE is positive for both "
    "(distortion p = 0.006, mean f(q) p = 0.03; README \"Reference results\"). Not reproduced."))
def test_himmelblau_rotation_is_lower_after_100_updates(results, quantity):
    """The claim holds where the 95% t-interval of the paired difference rotation − STE lies below zero
    (README "Reports": the verdict rule)."""
    directory, df = results("appendix_a2")
    runs = by_label(directory, df, "config.seed", "config.estimator.name")
    seeds = sorted({seed for seed, _ in runs})
    difference = paired_difference({s: runs[(s, "rotation")]["final"][quantity] for s in seeds},
                                   {s: runs[(s, "ste")]["final"][quantity] for s in seeds})
    assert difference.n == 20
    assert difference.high < 0, f"{A2_CLAIMS[quantity]}: rotation − STE = {difference.mean:.4g} " \
                                f"[{difference.low:.4g}, {difference.high:.4g}]"


@pytest.mark.parametrize("interruption", ["crash", "preemption"])
def test_himmelblau_resume_gives_identical_snapshots(tmp_path, monkeypatch, one_thread, interruption):
    """A run stopped after 60 updates and resumed from its checkpoint (the periodic one at 50 after a crash,
    one at 60 after a preemption) ends with the same snapshots as an uninterrupted run; the snapshot after 33
    updates comes from the checkpoint."""
    resolved = copy.deepcopy(load_suite(SUITES / "appendix_a2.yaml").runs[-1].config.resolved)
    resolved["training"]["checkpoint_every"] = 25
    config = RunConfig.from_resolved(resolved)
    reference = train_run(config, tmp_path / "straight", progress=False)
    if interruption == "crash":
        original = Himmelblau.training_step

        def crashing(self, batch, ctx, optimizers):
            if ctx.step == 60:
                raise KeyboardInterrupt("simulated crash")
            return original(self, batch, ctx, optimizers)

        monkeypatch.setattr(Himmelblau, "training_step", crashing)
        with pytest.raises(KeyboardInterrupt):
            train_run(config, tmp_path / "resumed", progress=False)
        monkeypatch.setattr(Himmelblau, "training_step", original)
        expected_step = 50
    else:
        polls = iter(range(1000))
        stopped = train_run(config, tmp_path / "resumed", progress=False, should_stop=lambda: next(polls) == 59)
        assert stopped.status == "preempted" and stopped.step == 60
        expected_step = 60
    assert torch.load(tmp_path / "resumed" / store.CHECKPOINT, weights_only=True)["step"] == expected_step
    resumed = train_run(config, tmp_path / "resumed", progress=False)
    first = json.loads((tmp_path / "straight" / store.ARTIFACTS).read_text())
    second = json.loads((tmp_path / "resumed" / store.ARTIFACTS).read_text())
    assert [s["step"] for s in second["snapshots"]] == [33, 66, 100]
    assert first == second
    assert resumed.metrics["val_distortion"] == reference.metrics["val_distortion"]


# -- A.4: far from the origin -----------------------------------------------------------------------------

def test_points_shift_rotation_tends_to_ste(results):
    directory, df = results("appendix_a4")
    runs = by_label(directory, df, "config.estimator.name", "config.model.shift")
    shifts = sorted(shift for name, shift in runs if name == "rotation")
    assert shifts == [0.0, 1.0, 10.0, 100.0]
    cosines = [runs[("rotation", shift)]["update_cosine_ste"] for shift in shifts]
    assert all(a < b for a, b in zip(cosines, cosines[1:])), cosines
    assert cosines[0] < 0.95 and cosines[-1] > 0.99
    assert abs(runs[("rotation", 100.0)]["update_norm_ratio"] - 1.0) < 1e-3
    for shift in shifts:
        assert runs[("ste", shift)]["update_cosine_ste"] == pytest.approx(1.0, abs=1e-6)
    art = runs[("rotation", 10.0)]
    assert len(art["points"]) == len(art["estimator_updates"]) == len(art["ste_updates"]) == len(art["cosine"])


# -- §3 Figure 2, §4.3 Figures 4-5 ------------------------------------------------------------------------

def cell_deviation(art: dict) -> float:
    """Largest deviation of the estimator's field from its mean within a cell, relative to the mean norm."""
    field, cells = np.asarray(art["estimator_field"]), np.asarray(art["assignments"])
    worst = max(np.abs(field[cells == k] - field[cells == k].mean(0)).max() for k in np.unique(cells))
    return worst / np.linalg.norm(field, axis=1).mean()


def test_ste_field_is_a_checkerboard_and_rotation_is_not(results):
    directory, df = results("figures")
    fields = {key: art for key, art in by_label(directory, df, "config.estimator.name", "config.model.figure",
                                                "config.model.function").items() if key[1] == "field"}
    for function in ("quadratic", "log_tanh"):
        ste, rotation = fields[("ste", "field", function)], fields[("rotation", "field", function)]
        assert len(np.unique(ste["assignments"])) == 16
        assert cell_deviation(ste) < 1e-6
        np.testing.assert_allclose(ste["estimator_field"], ste["ste_field"], rtol=1e-6, atol=1e-6)
        assert cell_deviation(rotation) > 0.1
        assert rotation["field_within_cell_spread"] > 0.1 and ste["field_within_cell_spread"] < 1e-6
    # for f = x² + y², λRᵀ∇f(q) = 2‖q‖²/‖e‖·ê is parallel to the exact gradient 2e
    assert fields[("rotation", "field", "quadratic")]["field_cosine_exact"] > 0.9999


def test_push_pull_within_a_cell(results):
    directory, df = results("figures")
    runs = {key[0]: art for key, art in by_label(directory, df, "config.estimator.name",
                                                  "config.model.figure").items() if key[1] == "push_pull"}
    for direction in ("along", "against"):
        assert np.abs(runs["ste"][f"{direction}_change"]).max() < 1e-6
    rotation = runs["rotation"]
    assert rotation["distance_change_along_wide"] > 0.05  # pushed away when the step points along q
    assert rotation["distance_change_against_wide"] < -0.05  # pulled in when it points against q


def test_decoder_aware_estimators_on_the_toy_problems():
    grid = Toy2DField(Toy2DFieldParams(function="log_tanh", resolution=8), estimators.get("exact"))
    field = gradient_field.fields(grid.estimator, "log_tanh", grid.positions, grid.codes)
    torch.testing.assert_close(field["estimator"], field["exact"], rtol=1e-4, atol=1e-4)
    hessian = Toy2DField(Toy2DFieldParams(figure="push_pull", resolution=8), estimators.get("hessian"))
    assert hessian.metrics()["distance_change_along"] == pytest.approx(0.0, abs=1e-6)  # linear: Hessian 0
    shift = PointsShift(PointsShiftParams(shift=1.0), estimators.get("hessian"))
    assert shift.metrics()["update_cosine_ste"] == pytest.approx(1.0, abs=1e-6)


# -- figures ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suite", sorted(SUITE_FIGURES))
def test_figures_write_png_and_pdf(results, suite):
    directory, df = results(suite)
    for name in FIGURES:
        paths = FIGURES[name](directory, df)
        if name not in SUITE_FIGURES[suite]:
            assert paths == [], name
            continue
        assert {p.suffix for p in paths} >= {".png", ".pdf"}
        assert all(p.exists() and p.stat().st_size > (1000 if p.suffix in (".png", ".pdf") else 0) for p in paths)
        assert all(p.parent == directory for p in paths)
    if suite == "appendix_a2":
        table = (directory / "himmelblau_table.csv").read_text()
        assert "distortion_mean" in table and "objective_codes_mean" in table


# -- typed artifacts ------------------------------------------------------------------------------------------

ARTIFACT_TYPES = {"appendix_a2": [HimmelblauArtifacts], "appendix_a4": [ShiftCosineArtifacts],
                  "figures": [GradientFieldArtifacts, PushPullArtifacts]}


@pytest.mark.parametrize("suite", sorted(ARTIFACT_TYPES))
def test_artifacts_read_back_as_their_type_and_write_the_same_json(results, suite):
    directory, df = results(suite)
    for run_id in df["run_id"]:
        data = artifacts(directory, run_id)
        kinds = [kind for kind in ARTIFACT_TYPES[suite] if kind.describes(data)]
        assert len(kinds) == 1, (run_id, data["problem"], data.get("figure"))
        typed = kinds[0].from_json(data)
        assert typed.to_json() == data


def test_artifacts_of_another_problem_or_figure_are_refused(results):
    directory, df = results("figures")
    field = next(a for a in by_label(directory, df, "run_id").values() if a["figure"] == "field")
    assert not PushPullArtifacts.describes(field) and GradientFieldArtifacts.describes(field)
    with pytest.raises(ValueError, match="figure 'field'.*not PushPullArtifacts"):
        PushPullArtifacts.from_json(field)
    with pytest.raises(ValueError, match="problem 'toy2d_field'"):
        HimmelblauArtifacts.from_json(field)
    with pytest.raises(ValueError, match="lack estimator_field"):
        GradientFieldArtifacts.from_json({k: v for k, v in field.items() if k != "estimator_field"})


def test_himmelblau_function_is_zero_at_its_minima_for_tensors_and_arrays():
    """One definition serves the family (torch) and the figure's contours (numpy)."""
    minima = np.asarray(HIMMELBLAU_MINIMA)
    assert np.abs(himmelblau(minima)).max() < 1e-8
    assert float(himmelblau(torch.tensor([0.0, 0.0]))) == 170.0  # 11² + 7²
    assert float(himmelblau(torch.tensor(minima)).abs().max()) < 1e-8


def test_sampling_estimators_have_no_gradient_at_a_given_code():
    with pytest.raises(TypeError, match="'gumbel' chooses its codes from logits"):
        Toy2DField(Toy2DFieldParams(resolution=4), estimators.get("gumbel")).metrics()
