"""Every bad setting is refused when the suite is loaded, before anything runs ("Hardening").

One table: each case writes a tiny suite with one thing wrong and asserts that a line of the error names the
suite file, the key path and the fix. Nothing here trains.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from PIL import Image

from harness import data
from harness.suite import SuiteError, load_suite
from helpers_harness import tiny_raw, write_yaml


def base(**sections) -> dict:
    """A tiny suite whose base sections are updated with `sections`."""
    return tiny_raw("bad", base=sections)


def with_top(**keys) -> dict:
    raw = tiny_raw("bad")
    raw.update(keys)
    return raw


def text_edit(old: str, new: str):
    """A case given as suite-file text: the tiny suite's YAML with `old` replaced by `new`."""
    return ("text", old, new)


def root_case(make):
    """A data section whose root `make(tmp_path)` prepares."""
    return ("root", make)


def empty_folder(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("not an image")
    return tmp_path / "empty"


CASES = {
    # numeric ranges
    "negative steps": (base(training={"steps": -5}), [], "training.steps", "must be at least 1, got -5"),
    "zero checkpoint_every": (base(training={"checkpoint_every": 0}), [], "training.checkpoint_every",
                              "must be at least 1"),
    "zero log_every": (base(training={"log_every": 0}), [], "training.log_every", "must be at least 1"),
    "negative batch_size": (base(training={"batch_size": -4}), [], "training.batch_size", "must be at least 1"),
    "zero lr": (base(training={"lr": 0.0}), [], "training.lr", "must be positive, got 0.0"),
    "negative lr": (base(training={"lr": -1e-3}), [], "training.lr", "must be positive"),
    "beta of 1": (base(training={"betas": [0.9, 1.0]}), [], "training.betas", "must be in [0, 1)"),
    "negative warmup": (base(training={"warmup_steps": -1}), [], "training.warmup_steps", "must be at least 0"),
    "zero wall-clock checkpoint": (base(training={"checkpoint_every_min": 0}), [], "training.checkpoint_every_min",
                                   "must be positive"),
    "unknown device": (base(training={"device": "gpu"}), [], "training.device", "use auto, cpu, cuda"),
    "zero diagnostics batch": (base(metrics={"diagnostics_batch": 0}), [], "metrics.diagnostics_batch",
                               "must be at least 1"),
    "misspelt lookup": (base(model={"lookup": "cosin"}), [], "model", "lookup 'cosin' is not one of euclidean, cosine"),
    "ema_decay of 1": (base(model={"ema_decay": 1.0}), [], "model", "ema_decay must be in [0, 1)"),
    "zero codes": (base(model={"num_codes": 0}), [], "model", "num_codes must be positive"),
    # data roots, checked on disk at load
    "missing image root": (root_case(lambda tmp: {"name": "image_folder", "root": str(tmp / "nowhere"), "size": 16}),
                           [], "data.root", "does not exist"),
    "empty image root": (root_case(lambda tmp: {"name": "image_folder", "root": str(empty_folder(tmp)), "size": 16}),
                         [], "data.root", "holds no file image_folder reads"),
    "missing cifar10 root": (root_case(lambda tmp: {"name": "cifar10", "root": str(tmp / "cifar")}), [],
                             "data.root", "does not exist"),
    "empty cifar10 root": (root_case(lambda tmp: {"name": "cifar10", "root": str(empty_folder(tmp))}), [],
                           "data.root", "cifar-10-batches-py"),
    # messages instead of tracebacks
    "--set value not YAML": (tiny_raw("bad"), ["training.steps=["], "--set", "not valid YAML"),
    "--set section to a scalar": (tiny_raw("bad"), ["training=5"], "training", "expected a mapping"),
    "--set section to null": (tiny_raw("bad"), ["model=null"], "model", "expected a mapping with family"),
    "grid key replaces a section": (with_top(grid={"estimator": ["ste"]}), [], "estimator",
                                    "expected a mapping with name"),
    "exclude rule not a mapping": (with_top(exclude=["ste"]), [], "exclude[0]", "expected a mapping of dotted key"),
    "exclude not a list": (with_top(exclude="ste"), [], "exclude", "expected a list of rules"),
    # misspelt names, with the closest valid one
    "duplicate key": (text_edit("    steps: 4\n", "    steps: 4\n    steps: 5\n"), [], "'steps' is given twice",
                      "remove one of them"),
    "misspelt exclude key": (with_top(grid={"estimator.name": ["ste", "rotation"]}, exclude=[{"estimator.nme": "ste"}]),
                             [], "exclude[0].estimator.nme", "Did you mean 'estimator.name'?"),
    "misspelt paper key": (with_top(paper={"tabel": "table1"}), [], "paper.tabel", "Did you mean 'table'?"),
    "misspelt report key": (with_top(report={"figurs": ["push_pull"]}), [], "report.figurs", "Did you mean 'figures'?"),
    "unknown figure name": (with_top(report={"figures": ["push_pul"]}), [], "report.figures[0]",
                            "Did you mean 'push_pull'?"),
    "figure number in report": (with_top(report={"figures": [2]}), [], "report.figures[0]",
                                "go under paper.figures"),
    # the suite name is one plain folder name
    "name escapes the output folder": (with_top(name="../../x"), [], "name", "not a plain folder name"),
    "absolute name": (with_top(name="/tmp/x"), [], "name", "e.g. name: tmp_x"),
    "name with a separator": (with_top(name="a/b"), [], "name", "may not contain /"),
    "hidden name": (with_top(name=".x"), [], "name", "nor start with a dot"),
    # SLURM
    "unquoted slurm time": (text_edit("name: bad\n", "name: bad\nslurm:\n  time: 10:30\n"), [], "slurm.time",
                            'must be quoted: time: "10:30"'),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_setting_is_refused_naming_file_key_and_fix(case, tmp_path):
    raw, overrides, key, fix = CASES[case]
    path = tmp_path / "bad.yaml"
    if isinstance(raw, tuple) and raw[0] == "text":
        _, old, new = raw
        text = yaml.safe_dump(tiny_raw("bad"), sort_keys=False)
        assert old in text
        path.write_text(text.replace(old, new, 1))
    elif isinstance(raw, tuple):
        suite = tiny_raw("bad")
        suite["base"]["data"] = raw[1](tmp_path)
        write_yaml(path, suite)
    else:
        write_yaml(path, copy.deepcopy(raw))
    with pytest.raises(SuiteError) as info:
        load_suite(path, overrides=overrides)
    lines = str(info.value).splitlines()
    assert any(str(path) in line and key in line and fix in line for line in lines), str(info.value)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """PyYAML reads `lr: 1e-05` as a string; suite files (and --set values) read it as the number."""
    text = yaml.safe_dump(tiny_raw("ok"), sort_keys=False).replace("    steps: 4\n", "    steps: 4\n    lr: 1e-05\n")
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    (spec,) = load_suite(path).runs
    assert spec.config.training.lr == 1e-05 and isinstance(spec.config.resolved["training"]["lr"], float)
    (same,) = load_suite(path, overrides=["training.lr=1e-05"]).runs
    assert same.run_id == spec.run_id


def test_each_data_root_is_checked_once_and_a_good_root_loads(tmp_path, monkeypatch):
    folder = tmp_path / "images" / "cls"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    raw = tiny_raw("roots", seeds=[0, 1], grid={"estimator.name": ["ste", "rotation"]})
    raw["base"]["data"] = {"name": "image_folder", "root": str(tmp_path / "images"), "size": 16}
    calls = []
    original = data.root_problem
    monkeypatch.setattr(data, "root_problem", lambda cfg: calls.append(cfg) or original(cfg))
    suite = load_suite(write_yaml(tmp_path / "roots.yaml", raw))
    assert len(suite.runs) == 4 and len(calls) == 1
    assert load_suite(write_yaml(tmp_path / "roots.yaml", raw), check_data=False).runs
