"""Suite files (harness/suite.py): schema errors, grid/zip/exclude expansion, run ids, layers, resolution.

Nothing here trains: every test stops at load_suite or at `run-suite --dry-run`.
"""
from __future__ import annotations

import copy

import pytest

import estimators
from harness.cli import run_suite_main
from harness.suite import SUITES_DIR, SuiteError, load_suite, parse_set, run_id_of
from helpers_harness import tiny_raw, write_suite, write_yaml

GRID2 = {"estimator.name": ["ste", "rotation"]}


def load_error(tmp_path, raw: dict, **kwargs) -> tuple[str, str]:
    """(error message, suite path) of loading `raw` written to tmp_path/bad.yaml; fails if it loads."""
    path = write_yaml(tmp_path / "bad.yaml", raw)
    with pytest.raises(SuiteError) as info:
        load_suite(path, **kwargs)
    return str(info.value), str(path)


def tiny_with(mutate=None, **kwargs) -> dict:
    kwargs.setdefault("grid", copy.deepcopy(GRID2))
    raw = tiny_raw("bad", **kwargs)
    if mutate:
        mutate(raw)
    return raw


def run_label(estimator: str, seed: int = 0) -> str:
    return f"run estimator.name={estimator},seed={seed}"


# -- schema errors: one per kind of bad input ---------------------------------------------------------------

def test_valid_tiny_suite_loads(tmp_path):
    suite = load_suite(write_yaml(tmp_path / "ok.yaml", tiny_with()))
    assert [spec.config.estimator.name for spec in suite.runs] == ["ste", "rotation"]


def test_unknown_top_level_key(tmp_path):
    message, path = load_error(tmp_path, tiny_with(lambda r: r.update(gird={"estimator.name": ["ste"]})))
    assert f"{path}: gird: unknown key 'gird'. Did you mean 'grid'?" in message
    assert "Valid keys:" in message and "zip" in message


def test_unknown_section_in_base(tmp_path):
    message, path = load_error(tmp_path, tiny_with(lambda r: r["base"].update(trainign={"steps": 3})))
    assert f"{path}: base.trainign: unknown key 'trainign'. Did you mean 'training'?" in message


def test_unknown_training_key(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"training": {"warmup_step": 5}}))
    expected = (f"{path}: {run_label('ste')}: training.warmup_step: unknown key 'warmup_step'. "
                "Did you mean 'warmup_steps'?")
    assert expected in message
    assert "lr" in message.split("Valid keys:")[1]


def test_lr_rate_suggests_lr(tmp_path):
    """`lr_rate` is a typo of `lr`, not of `min_lr_ratio` (the brief's own example)."""
    message, path = load_error(tmp_path, tiny_with(base={"training": {"lr_rate": 0.1}}))
    assert f"{path}: {run_label('ste')}: training.lr_rate: unknown key 'lr_rate'." in message
    assert "Did you mean 'lr'?" in message


def test_unknown_model_param(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"model": {"num_code": 4}}))
    assert f"{path}: {run_label('ste')}: model.num_code: unknown key 'num_code'. Did you mean 'num_codes'?" in message


def test_unknown_estimator(tmp_path):
    raw = tiny_with(grid={"estimator.name": ["ste", "rotaton"]})
    message, path = load_error(tmp_path, raw)
    # the README's example, verbatim
    assert (f"{path}: {run_label('rotaton')}: estimator.name: unknown estimator 'rotaton'. "
            "Did you mean 'rotation'?") in message
    assert run_label("ste") not in message  # only the bad run is named
    assert message.count("\n") == 1  # one problem line


def test_unknown_estimator_param(tmp_path):
    raw = tiny_with(grid={"estimator.name": ["rotation_gamma"]}, base={"estimator": {"gama": "one"}})
    message, path = load_error(tmp_path, raw)
    assert (f"{path}: {run_label('rotation_gamma')}: estimator.gama: unknown key 'gama'. "
            "Did you mean 'gamma'?") in message


def test_unknown_model_family(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"model": {"family": "vqvea"}}))
    assert f"{path}: {run_label('ste')}: model.family: unknown model family 'vqvea'. Did you mean 'vqvae'?" in message


def test_unknown_preset(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"model": {"preset": "cpuu"}}))
    assert f"{path}: {run_label('ste')}: model.preset: family 'vqvae' has no preset 'cpuu'. Did you mean 'cpu'?" in message
    assert "paper_euclidean_8192x3" in message  # the valid presets are listed


def test_unknown_dataset_param(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"data": {"sise": 16}}))
    assert f"{path}: {run_label('ste')}: data.sise: unknown key 'sise'. Did you mean 'size'?" in message


def test_unknown_dataset(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"data": {"name": "natural_patchs"}}))
    assert f"{path}: {run_label('ste')}: data.name: unknown dataset 'natural_patchs'." in message
    assert "Did you mean 'natural_patches'?" in message


def test_wrong_type(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"training": {"steps": "ten"}}))
    assert f"{path}: {run_label('ste')}: training.steps: expected " in message
    assert "int" in message and "got 'ten' (str)" in message


def test_wrong_type_dataset_param(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"data": {"size": "big"}}))
    assert f"{path}: {run_label('ste')}: data.size: expected an integer, got 'big' (str)" in message


def test_bad_choice(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"training": {"precision": "fp16"}}))
    assert f"{path}: {run_label('ste')}: training.precision: 'fp16' is not one of fp32, bf16" in message


def test_unknown_profile(tmp_path):
    raw = tiny_with(profiles={"cpu": {"training": {"steps": 3}}, "paper": {"training": {"steps": 9}}})
    message, path = load_error(tmp_path, raw, profile="cpux")
    assert f"{path}: profile: suite has no profile 'cpux'. Did you mean 'cpu'? Valid: cpu, paper" in message


def test_unknown_default_profile(tmp_path):
    raw = tiny_with(profiles={"cpu": {"training": {"steps": 3}}}, default_profile="cpuu")
    message, path = load_error(tmp_path, raw)
    assert f"{path}: profile: suite has no profile 'cpuu'. Did you mean 'cpu'?" in message


def test_zip_groups_of_unequal_length(tmp_path):
    raw = tiny_with(zip=[{"training.lr": [0.1, 0.2], "model.lookup": ["cosine"]}])
    message, path = load_error(tmp_path, raw)
    assert f"{path}: zip[0]: every key needs a list, all of one length" in message
    assert "'training.lr': 2" in message and "'model.lookup': 1" in message


def test_grid_value_not_a_list(tmp_path):
    message, path = load_error(tmp_path, tiny_with(grid={"estimator.name": "ste"}))
    assert f"{path}: grid.estimator.name: expected a non-empty list of values, got 'ste'" in message


def test_grid_key_outside_sections(tmp_path):
    message, path = load_error(tmp_path, tiny_with(grid={"estimater.name": ["ste"]}))
    assert f"{path}: grid/zip key estimater.name: must start with one of model, estimator" in message


def test_bad_seeds(tmp_path):
    message, path = load_error(tmp_path, tiny_with(seeds=[0, "one"]))
    assert f"{path}: seeds: expected a non-empty list of integers" in message


def test_impossible_factorized_dim(tmp_path):
    message, path = load_error(tmp_path, tiny_with(base={"model": {"factorized_dim": 4}}))
    assert (f"{path}: {run_label('ste')}: model: impossible combination: factorized_dim (4) must be smaller "
            "than latent_dim (4)") in message


def test_impossible_resolution(tmp_path):
    # channel_mult [1, 2, 2] downsamples by 4; 18 is not a multiple of 4
    raw = tiny_with(base={"model": {"resolution": 18, "channel_mult": [1, 2, 2]}})
    message, path = load_error(tmp_path, raw)
    assert (f"{path}: {run_label('ste')}: model: impossible combination: resolution 18 is not divisible by "
            "2^(len(channel_mult)-1) = 4") in message


def test_video_dataset_with_image_family(tmp_path):
    raw = tiny_with()
    raw["base"]["data"] = {"name": "panning_photos", "size": 16, "frames": 4}
    message, path = load_error(tmp_path, raw)
    assert (f"{path}: {run_label('ste')}: data.name: dataset 'panning_photos' yields video data but family "
            "'vqvae' needs image data") in message


def test_missing_steps(tmp_path):
    raw = tiny_with()
    del raw["base"]["training"]["steps"]
    message, path = load_error(tmp_path, raw)
    assert f"{path}: {run_label('ste')}: training: set training.steps (or training.epochs)" in message


def test_set_without_equals(tmp_path):
    message, path = load_error(tmp_path, tiny_with(), overrides=["training.steps"])
    assert f"{path}: --set: --set 'training.steps': expected key.path=value" in message


def test_set_unknown_section(tmp_path):
    message, path = load_error(tmp_path, tiny_with(), overrides=["trainig.steps=3"])
    assert "unknown key 'trainig'. Did you mean 'training'?" in message and path in message


def test_every_problem_is_listed(tmp_path):
    raw = tiny_with(base={"training": {"precision": "fp16", "warmup_step": 3}, "model": {"preset": "cpuu"}})
    message, _ = load_error(tmp_path, raw)
    for fragment in ("training.precision", "training.warmup_step", "model.preset"):
        assert fragment in message


def test_invalid_suite_runs_nothing(tmp_path, capsys):
    path = write_yaml(tmp_path / "bad.yaml", tiny_with(grid={"estimator.name": ["ste", "rotaton"]}))
    out = tmp_path / "results"
    assert run_suite_main([str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Did you mean 'rotation'?" in err
    assert not out.exists()


def test_set_without_equals_on_the_cli_runs_nothing(tmp_path, capsys):
    path = write_suite(tmp_path, grid=GRID2)
    out = tmp_path / "results"
    assert run_suite_main([str(path), "--out", str(out), "--set", "training.steps"]) == 2
    assert "expected key.path=value" in capsys.readouterr().err
    assert not out.exists()


# -- --set parsing --------------------------------------------------------------------------------------

def test_parse_set_values():
    parsed = parse_set(["training.lr=1e-4", "model.channel_mult=[1,2]", "training.grad_clip=",
                        "estimator.name=rotation", "training.steps=100", "estimator.hard=false"])
    assert parsed == {"training": {"lr": 1e-4, "grad_clip": None, "steps": 100},
                      "model": {"channel_mult": [1, 2]}, "estimator": {"name": "rotation", "hard": False}}
    assert isinstance(parsed["training"]["lr"], float)
    assert isinstance(parsed["training"]["steps"], int)


# -- grid expansion and ids -----------------------------------------------------------------------------

def test_cartesian_product_count(tmp_path):
    grid = {"estimator.name": ["ste", "rotation"], "model.num_codes": [8, 16, 32]}
    suite = load_suite(write_suite(tmp_path, grid=grid, seeds=[0, 1]))
    assert len(suite.runs) == 12
    combos = {(s.config.estimator.name, s.config.model.params.num_codes, s.config.seed) for s in suite.runs}
    assert len(combos) == 12
    assert len({s.run_id for s in suite.runs}) == 12
    first = suite.runs[0]
    assert first.label == {"estimator.name": "ste", "model.num_codes": 8, "seed": 0}


def test_zip_pairs_values(tmp_path):
    raw_zip = [{"model.lookup": ["euclidean", "cosine"], "training.lr": [5e-5, 1e-4]}]
    suite = load_suite(write_suite(tmp_path, grid={"estimator.name": ["ste", "rotation"]}, zip=raw_zip))
    pairs = [(s.config.estimator.name, s.config.model.params.lookup, s.config.training.lr)
             for s in suite.runs]
    assert pairs == [("ste", "euclidean", 5e-5), ("ste", "cosine", 1e-4),
                     ("rotation", "euclidean", 5e-5), ("rotation", "cosine", 1e-4)]
    assert suite.runs[1].label == {"estimator.name": "ste", "model.lookup": "cosine", "training.lr": 1e-4, "seed": 0}


def test_exclude_drops_matching_runs(tmp_path):
    grid = {"estimator.name": ["ste", "rotation", "reflection"], "model.num_codes": [16, 32]}
    exclude = [{"estimator.name": "ste", "model.num_codes": 32}, {"estimator.name": "reflection"}]
    suite = load_suite(write_suite(tmp_path, grid=grid, exclude=exclude, seeds=[0, 1]))
    combos = sorted({(s.config.estimator.name, s.config.model.params.num_codes) for s in suite.runs})
    assert combos == [("rotation", 16), ("rotation", 32), ("ste", 16)]
    assert len(suite.runs) == 6


def test_exclude_everything_is_an_error(tmp_path):
    path = write_suite(tmp_path, grid=GRID2, exclude=[{"model.family": "vqvae"}])
    with pytest.raises(SuiteError, match="expands to no runs"):
        load_suite(path)


def test_ids_are_stable_and_change_with_any_value(tmp_path):
    path = write_suite(tmp_path, grid=GRID2, seeds=[0, 1])
    first = [s.run_id for s in load_suite(path).runs]
    again = [s.run_id for s in load_suite(path).runs]
    assert first == again
    assert len(set(first)) == 4
    for spec in load_suite(path).runs:
        assert spec.run_id == run_id_of(spec.config.resolved)
        assert len(spec.run_id) == 12
    changed_lr = [s.run_id for s in load_suite(path, overrides=["training.lr=2e-3"]).runs]
    assert not set(changed_lr) & set(first)
    same_lr = [s.run_id for s in load_suite(path, overrides=["training.lr=1e-3"]).runs]  # the preset's value
    assert same_lr == first
    changed_data = [s.run_id for s in load_suite(path, overrides=["data.val_patches=32"]).runs]
    assert not set(changed_data) & set(first)


def test_ids_do_not_depend_on_key_order(tmp_path):
    raw = tiny_raw("a", grid=GRID2)
    reordered = copy.deepcopy(raw)
    reordered["base"] = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(raw["base"].items()))}
    ids_a = [s.run_id for s in load_suite(write_yaml(tmp_path / "a.yaml", raw)).runs]
    ids_b = [s.run_id for s in load_suite(write_yaml(tmp_path / "b.yaml", reordered)).runs]
    assert ids_a == ids_b


def test_layer_order(tmp_path):
    """preset < base < profile < grid < --set, checked on one key won by each layer."""
    base = {"model": {"num_codes": 32}, "training": {"lr": 2e-3, "weight_decay": 0.1}}
    raw = tiny_raw("layers", base=base, grid={"model.num_codes": [20, 24], "training.weight_decay": [0.3]},
                   profiles={"small": {"training": {"lr": 3e-3, "weight_decay": 0.2}, "model": {"num_codes": 28}}},
                   default_profile="small")
    del raw["base"]["training"]["warmup_steps"]
    path = write_yaml(tmp_path / "layers.yaml", raw)
    suite = load_suite(path, overrides=["training.weight_decay=0.4"])
    assert suite.profile == "small"
    cfg = suite.runs[0].config.resolved
    assert cfg["training"]["warmup_steps"] == 50  # preset (cpu) only
    assert cfg["training"]["schedule"] == "cosine"  # preset only
    assert cfg["model"]["attn_resolutions"] == []  # preset only
    assert cfg["training"]["batch_size"] == 8  # base beats preset's 64
    assert cfg["model"]["channels"] == 8  # base beats preset's 32
    assert cfg["training"]["lr"] == 3e-3  # profile beats base's 2e-3 and preset's 1e-3
    assert [s.config.model.params.num_codes for s in suite.runs] == [20, 24]  # grid beats profile's 28
    assert cfg["training"]["weight_decay"] == 0.4  # --set beats grid's 0.3
    assert cfg["seed"] == 0
    without_set = load_suite(path).runs[0].config.resolved
    assert without_set["training"]["weight_decay"] == 0.3  # grid beats profile's 0.2
    without_profile_raw = copy.deepcopy(raw)
    del without_profile_raw["default_profile"]
    plain = load_suite(write_yaml(tmp_path / "plain.yaml", without_profile_raw))
    assert plain.profile is None
    assert plain.runs[0].config.resolved["training"]["lr"] == 2e-3  # base beats preset's 1e-3


def test_profile_argument_beats_default_profile(tmp_path):
    raw = tiny_raw("profiles", profiles={"a": {"training": {"steps": 3}}, "b": {"training": {"steps": 7}}},
                   default_profile="a")
    path = write_yaml(tmp_path / "profiles.yaml", raw)
    assert load_suite(path).runs[0].config.resolved["training"]["steps"] == 3
    assert load_suite(path, profile="b").runs[0].config.resolved["training"]["steps"] == 7


def test_bare_name_resolves_to_project_suites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = load_suite("quickstart")
    assert suite.path.resolve() == (SUITES_DIR / "quickstart.yaml").resolve()
    assert suite.name == "quickstart" and suite.profile == "cpu"
    assert len(suite.runs) == 10  # 2 estimators × 5 seeds
    assert {s.config.estimator.name for s in suite.runs} == {"ste", "rotation"}
    assert all(s.config.resolved["training"]["steps"] == 250 for s in suite.runs)


def test_bare_name_prefers_a_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_suite(tmp_path, name="mylocal", grid=GRID2)
    suite = load_suite("mylocal")
    assert suite.path.resolve() == (tmp_path / "mylocal.yaml").resolve()
    assert len(suite.runs) == 2


def test_missing_suite_suggests_the_closest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SuiteError) as info:
        load_suite("quickstrat")
    message = str(info.value)
    assert message.startswith("quickstrat: no such suite file")
    assert "Did you mean 'quickstart'?" in message


def test_all_estimators_validate_with_vqvae(tmp_path):
    """Every registered estimator is accepted by the suite loader for the VQ-VAE family whose codebook learns by
    the loss (sync and ibq need a codebook gradient, so they refuse an EMA codebook)."""
    suite = load_suite(write_suite(tmp_path, grid={"estimator.name": estimators.names()},
                                   base={"model": {"codebook_learning": "loss"}}))
    assert sorted(s.config.estimator.name for s in suite.runs) == estimators.names()
    assert {"ste", "rotation", "reflection", "hessian", "exact", "gumbel"} <= set(estimators.names())


# -- dry run ----------------------------------------------------------------------------------------------

def test_dry_run_prints_table_and_creates_nothing(tmp_path, capsys):
    path = write_suite(tmp_path, name="dry", grid={"estimator.name": ["ste", "rotation", "reflection"]}, seeds=[0, 1])
    out = tmp_path / "results"
    assert run_suite_main([str(path), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    suite = load_suite(path)
    assert f"suite dry ({path}), profile (none): 6 runs" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("run_id"))
    assert header.split() == ["run_id", "estimator.name", "seed", "status"]
    for spec in suite.runs:
        row = next(line for line in lines if line.startswith(spec.run_id))
        assert row.split() == [spec.run_id, spec.config.estimator.name, str(spec.config.seed), "new"]
    assert not out.exists()


def test_a_profile_replaces_grid_seeds_and_exclude(tmp_path):
    raw = tiny_raw(seeds=(0, 1), grid={"estimator.name": ["ste", "rotation"]})
    raw["profiles"] = {
        "small": {"seeds": [5], "grid": {"estimator.name": ["ste", "reflection", "rotation"]},
                  "exclude": [{"estimator.name": "rotation"}], "training": {"steps": 3}},
        "plain": {"training": {"steps": 2}},
    }
    path = write_yaml(tmp_path / "suite.yaml", raw)
    small = load_suite(path, profile="small")
    assert sorted((r.label["estimator.name"], r.label["seed"]) for r in small.runs) == [("reflection", 5), ("ste", 5)]
    assert {r.config.resolved["training"]["steps"] for r in small.runs} == {3}
    plain = load_suite(path, profile="plain")
    assert sorted((r.label["estimator.name"], r.label["seed"]) for r in plain.runs) == [
        ("rotation", 0), ("rotation", 1), ("ste", 0), ("ste", 1)]


def test_readme_tables_match_the_typed_sections():
    """README "Suite files" shows each section's keys exactly as harness/config.py declares them."""
    from harness.config import MetricsConfig, PaperConfig, ReportConfig, TrainingConfig
    from harness.schema import markdown_table

    readme = (SUITES_DIR.parent / "README.md").read_text()
    for section in (TrainingConfig, MetricsConfig, PaperConfig, ReportConfig):
        assert markdown_table(section) in readme, f"regenerate the README table of {section.__name__}"
