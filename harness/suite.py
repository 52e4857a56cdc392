"""Suite files: load (yaml.safe_load), validate everything before anything runs, expand into run specs.

Resolution of one run, later layers winning: the family preset (model + training defaults) < `base` <
the chosen profile < the grid/zip point < `--set` overrides; then `seed`. Every run gets a stable id, a hash
of its fully resolved configuration. The README's "Suite files" section documents the schema.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import models

from . import data as data_module
from .config import (RUN_SECTIONS, ConfigError, PaperConfig, Problems, ReportConfig, RunConfig, SlurmConfig,
                     check_section, key_paths)
from .schema import did_you_mean, unknown_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = PROJECT_ROOT / "suites"
TOP_KEYS = ("name", "description", "seeds", "base", "profiles", "default_profile", "grid", "zip", "exclude",
            "paper", "report", "slurm")
#: Top-level sections besides the run sections that `--set` may change.
FREE_SECTIONS = ("paper", "report", "slurm")
#: Keys a profile may set besides the run sections: they replace the suite's own (e.g. the paper profile
#: crosses the paper's settings and requests GPUs on SLURM, the cpu profile small stand-ins).
PROFILE_EXPANSION_KEYS = ("seeds", "grid", "zip", "exclude", "slurm")


class SuiteError(ConfigError):
    """A suite file is invalid; the message names the file, the key path and the fix."""


@dataclass
class RunSpec:
    """One fully resolved run of a suite."""

    suite: str
    run_id: str
    config: RunConfig  # validated; config.resolved is the plain dict the run id hashes
    label: dict  # the values that vary across the suite (grid/zip keys and seed)
    profile: str | None = None


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    profile: str | None
    runs: list[RunSpec]
    raw: dict = field(repr=False, default_factory=dict)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    @property
    def paper(self) -> dict:
        return self.raw.get("paper") or {}

    @property
    def report(self) -> dict:
        return self.raw.get("report") or {}


# -- small helpers ----------------------------------------------------------------------------------------

def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A suite file path; a bare name that is not a file here resolves to the project's suites/ folder."""
    candidate = Path(name_or_path)
    for path in (candidate, candidate.with_suffix(".yaml") if candidate.suffix == "" else None):
        if path is not None and path.is_file():
            return path
    for path in (SUITES_DIR / candidate.name, SUITES_DIR / f"{candidate.name}.yaml"):
        if path.is_file():
            return path
    available = [p.stem for p in SUITES_DIR.glob("*.yaml")]
    raise SuiteError(f"{name_or_path}: no such suite file (looked here and in {SUITES_DIR})."
                     + did_you_mean(candidate.stem, available, "Available"))


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: `override` merged into `base`, recursively for nested dicts."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(target: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SuiteError(f"cannot set {dotted!r}: {part!r} is not a section")
    node[leaf] = copy.deepcopy(value)


def get_dotted(source: dict, dotted: str, default=None):
    node = source
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def parse_set(assignments: list[str]) -> dict:
    """`--set key.path=value` strings → a nested dict; values are parsed as YAML ('1e-4' → 0.0001)."""
    out: dict = {}
    for text in assignments or []:
        if "=" not in text:
            raise SuiteError(f"--set {text!r}: expected key.path=value, e.g. --set training.steps=100")
        key, raw = text.split("=", 1)
        try:
            value = yaml.load(raw, Loader=SuiteLoader) if raw.strip() else None
        except yaml.YAMLError as error:
            raise SuiteError(f"--set {text!r}: the value is not valid YAML ({_one_line(error)}); quote it if it "
                             "is text, e.g. --set 'training.device=\"cpu\"'") from None
        set_dotted(out, key.strip(), value)
    return out


def run_id_of(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


# -- loading and expansion --------------------------------------------------------------------------------

def _check_sections_shape(problems: Problems, where: str, layer, extra_keys: tuple = ()) -> None:
    if layer is None:
        return
    if not isinstance(layer, dict):
        problems.add(where, f"expected a mapping of sections ({', '.join(RUN_SECTIONS)}), got {layer!r}")
        return
    for key, value in layer.items():
        if key in extra_keys:
            continue
        if key not in RUN_SECTIONS:
            problems.unknown(where, key, RUN_SECTIONS + extra_keys)
        elif not isinstance(value, dict):
            problems.add(f"{where}.{key}", f"expected a mapping, got {value!r}")


class SuiteLoader(yaml.SafeLoader):
    """yaml.SafeLoader for suite files and --set values: a key given twice in one mapping is an error (PyYAML
    lets the second silently win), and 1e-5 (exponent, no dot) is a number, as in YAML 1.2 (PyYAML 1.1 reads
    it as a string)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` keys may be overridden below
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} is given twice (first on line {seen[key] + 1}); remove one of them",
                    key_node.start_mark)
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


SuiteLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                  list("-+0123456789"))


def _one_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).split())


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.load(path.read_text(), Loader=SuiteLoader)
    except yaml.YAMLError as error:
        raise SuiteError(f"{path}: not valid YAML: {_one_line(error)}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite is a mapping with keys {', '.join(TOP_KEYS)}; got {type(raw).__name__}")
    return raw


def _grid_points(problems: Problems, raw: dict) -> list[dict]:
    """The grid × zip points as {dotted key: value} dicts."""
    axes: list[list[dict]] = []
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        problems.add("grid", "expected a mapping of dotted keys to lists, e.g. estimator.name: [ste, rotation]")
        grid = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.add(f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
            continue
        axes.append([{key: v} for v in values])
    for index, group in enumerate(raw.get("zip") or []):
        if not isinstance(group, dict) or not group:
            problems.add(f"zip[{index}]", "expected a mapping of dotted keys to equal-length lists")
            continue
        lengths = {key: len(v) if isinstance(v, list) else -1 for key, v in group.items()}
        if -1 in lengths.values() or len(set(lengths.values())) != 1:
            problems.add(f"zip[{index}]", f"every key needs a list, all of one length; got lengths {lengths}")
            continue
        n = next(iter(lengths.values()))
        axes.append([{key: group[key][i] for key in group} for i in range(n)])
    for key_dicts in axes:
        for point in key_dicts:
            for dotted in point:
                if dotted.split(".")[0] not in RUN_SECTIONS:
                    problems.add(f"grid/zip key {dotted}", f"must start with one of {', '.join(RUN_SECTIONS)}")
    points = [{}]
    for axis in axes:
        points = [{**p, **choice} for p in points for choice in axis]
    return points


def _excluded(rules: list[dict], config: dict) -> bool:
    for rule in rules:
        if all(get_dotted(config, key) == value for key, value in rule.items()):
            return True
    return False


def load_suite(name_or_path, profile: str | None = None, overrides: list[str] | None = None,
               check_data: bool = True) -> Suite:
    """Load, validate and expand a suite; raises SuiteError listing every problem, before anything runs.

    With `check_data` each distinct dataset root must exist and hold files the dataset reads; pass False to
    read a suite whose data lives elsewhere (e.g. to report on results copied from a cluster)."""
    path = resolve_suite_path(name_or_path)
    raw = _read_yaml(path)
    problems = Problems(str(path))
    for key in raw:
        if key not in TOP_KEYS:
            problems.unknown("", key, TOP_KEYS)
    name = _suite_name(problems, raw.get("name"), path)
    profile = profile or raw.get("default_profile")
    profiles = raw.get("profiles") or {}
    if isinstance(profiles, dict) and isinstance(profiles.get(profile), dict):
        for key in PROFILE_EXPANSION_KEYS:  # the profile's own seeds/grid/zip/exclude/slurm replace the suite's
            if key in profiles[profile]:
                raw = {**raw, key: profiles[profile][key]}
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        problems.add("seeds", f"expected a non-empty list of integers, got {seeds!r}")
        seeds = [0]
    _check_sections_shape(problems, "base", raw.get("base"))
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        problems.add("profiles", "expected a mapping of profile name to sections")
        profiles = {}
    for profile_name, layer in profiles.items():
        _check_sections_shape(problems, f"profiles.{profile_name}", layer, PROFILE_EXPANSION_KEYS)
    if profile is not None and profile not in profiles:
        problems.add("profile", f"suite has no profile {profile!r}." + did_you_mean(profile, profiles))
    try:
        set_layer = parse_set(overrides)
    except SuiteError as error:
        problems.add("--set", str(error))
        set_layer = {}
    run_overrides = {k: v for k, v in set_layer.items() if k in RUN_SECTIONS}
    for key in set_layer:
        if key not in RUN_SECTIONS + FREE_SECTIONS:
            problems.unknown("--set", key, RUN_SECTIONS + FREE_SECTIONS)
    for section in FREE_SECTIONS:
        if section in set_layer:
            raw[section] = deep_merge(raw.get(section) or {}, set_layer[section])
    points = _grid_points(problems, raw)
    excludes = _exclude_rules(problems, raw.get("exclude"))
    slurm = _slurm(problems, raw.get("slurm"), path)
    check_section(problems, PaperConfig, raw.get("paper"), "paper")
    check_section(problems, ReportConfig, raw.get("report"), "report")
    _raise_if_any(problems)

    profile_sections = {k: v for k, v in (profiles.get(profile) or {}).items() if k in RUN_SECTIONS}
    base = deep_merge(raw.get("base") or {}, profile_sections)
    candidates = []  # (label, resolved run dict) of every grid point and seed, before exclusion
    for point in points:
        layered = copy.deepcopy(base)
        try:
            for dotted, value in point.items():
                set_dotted(layered, dotted, value)
        except SuiteError as error:
            problems.add(f"grid/zip key {dotted}", str(error))
            continue
        config = _with_preset(deep_merge(layered, run_overrides))
        candidates += [({**point, "seed": seed}, {**copy.deepcopy(config), "seed": seed}) for seed in seeds]
    _check_exclude_keys(problems, excludes, [resolved for _, resolved in candidates])
    runs: list[RunSpec] = []
    seen: dict[str, dict] = {}
    for label, run_config in candidates:
        if _excluded(excludes, run_config):
            continue
        where = "run " + ",".join(f"{k}={v}" for k, v in label.items())
        try:
            validated = RunConfig.from_resolved(run_config, where=f"{path}: {where}")
        except ConfigError as error:
            problems.take(error)
            continue
        run_id = run_id_of(run_config)
        if run_id in seen:
            continue
        seen[run_id] = label
        runs.append(RunSpec(name, run_id, validated, label, profile))
    if not runs and not problems.lines:
        problems.add("grid", "the suite expands to no runs (check exclude)")
    if check_data:
        _check_data_roots(problems, runs)
    _raise_if_any(problems)
    return Suite(name=name, path=path, description=str(raw.get("description", "")), profile=profile,
                 runs=runs, raw=raw, slurm=slurm)


def _suite_name(problems: Problems, name, path: Path) -> str:
    """The suite's name: one plain folder name, since results go to <out>/<name>/."""
    if not isinstance(name, str) or not name.strip():
        problems.add("name", "missing: every suite needs a name (its results go to results/<name>/)")
        return path.stem
    if name.startswith(".") or "/" in name or "\\" in name or Path(name).is_absolute():
        plain = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or path.stem
        problems.add("name", f"{name!r} is not a plain folder name: results go to <out>/<name>/, so the name "
                             f"may not contain / or \\ nor start with a dot; e.g. name: {plain}")
        return path.stem
    return name


def _exclude_rules(problems: Problems, rules) -> list[dict]:
    """The exclude rules: a list of mappings of dotted key to value."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        problems.add("exclude", f"expected a list of rules (mappings of dotted key to value), got {rules!r}")
        return []
    good = []
    for index, rule in enumerate(rules):
        if isinstance(rule, dict) and rule:
            good.append(rule)
        else:
            problems.add(f"exclude[{index}]", f"expected a mapping of dotted key to value, e.g. "
                                              f"{{estimator.name: ste, model.num_codes: 1024}}, got {rule!r}")
    return good


def _check_exclude_keys(problems: Problems, rules: list[dict], resolved_runs: list[dict]) -> None:
    """A rule key that no run can hold would exclude nothing: refuse it with the closest valid key."""
    valid: set[str] = set()
    for resolved in resolved_runs:
        valid |= key_paths(resolved)
    for index, rule in enumerate(rules):
        for key in rule:
            if key not in valid:
                problems.add(f"exclude[{index}].{key}", unknown_name("key", key, valid).replace(
                    "Valid keys: ", "Valid keys for this suite's runs: "))


def _check_data_roots(problems: Problems, runs: list[RunSpec]) -> None:
    """Each distinct dataset root is looked at once: it must exist and hold files the dataset reads."""
    checked: set = set()
    for spec in runs:
        data = spec.config.data
        if data is None:  # a family that reads no dataset
            continue
        key = (data.name, data.params)
        if key in checked:
            continue
        checked.add(key)
        problem = data_module.root_problem(data)
        if problem:
            label = ",".join(f"{k}={v}" for k, v in spec.label.items())
            problems.add(f"run {label}: data.root", problem)


def _raise_if_any(problems: Problems) -> None:
    problems.raise_if_any(SuiteError, "invalid suite")


def _slurm(problems: Problems, section, path: Path) -> SlurmConfig:
    """The validated ``slurm:`` section (defaults when it is wrong; its problems are recorded)."""
    try:
        return SlurmConfig.from_section(section, where=str(path))
    except ConfigError as error:
        problems.take(error)
        return SlurmConfig()


def _with_preset(layered: dict) -> dict:
    """Put the family preset underneath the layered config (model params and training defaults)."""
    model_cfg = layered.get("model") if isinstance(layered.get("model"), dict) else {}
    family_name, preset_name = model_cfg.get("family"), model_cfg.get("preset")
    preset = {}
    if family_name in models.family_names() and preset_name is not None:
        preset = models.get_family(family_name).presets.get(preset_name, {})
    resolved = {section: {} for section in RUN_SECTIONS}
    resolved = deep_merge(resolved, {"model": preset.get("model", {}), "training": preset.get("training", {})})
    return deep_merge(resolved, layered)
