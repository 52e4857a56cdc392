"""The typed configuration of a run and of a suite's SLURM section (README "Suite files" documents every key).

A suite resolves each run into a plain nested dict (sections model, estimator, data, training, metrics, and
seed); `RunConfig.from_resolved` checks it with the one validator (harness.schema) and builds one frozen
dataclass per section, so every bad setting is refused when the suite is loaded, before anything trains.
The plain dict stays in `RunConfig.resolved`: it is what a run's record stores and what its id hashes.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import estimators
import models
from estimators.registry import params_class

from . import data as data_module
from .run_logging import check_wandb_settings
from .schema import Problem, check_fields, did_you_mean, got, join_key, setting, unknown_name

RUN_SECTIONS = ("model", "estimator", "data", "training", "metrics")


class ConfigError(ValueError):
    """Invalid configuration; `problems` holds one line per problem: "<file>: <key path>: <problem, fix>"."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]

    @classmethod
    def listing(cls, problems: list[str], heading: str = "invalid configuration") -> ConfigError:
        return cls(f"{heading}:\n  " + "\n  ".join(problems), problems)


class Problems:
    """Collects problem lines "<where>: <key path>: <message>" (each once, in order)."""

    def __init__(self, where: str = ""):
        self.where = where
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        line = ": ".join(part for part in (self.where, key) if part) + f": {message}"
        if line not in self.lines:
            self.lines.append(line)

    def extend(self, problems: Iterable[Problem], prefix: str = "") -> None:
        for problem in problems:
            self.add(join_key(prefix, problem.key), problem.message)

    def take(self, error: ConfigError) -> None:
        """Record the problem lines of a ConfigError raised by a nested validation."""
        self.lines.extend(line for line in error.problems if line not in self.lines)

    def unknown(self, key_path: str, key, valid) -> None:
        self.add(f"{key_path}.{key}" if key_path else str(key), unknown_name("key", key, valid))

    def raise_if_any(self, error: type[ConfigError] = ConfigError, heading: str = "invalid configuration"):
        if self.lines:
            raise error.listing(self.lines, heading)


def _section(problems: Problems, cls, values, prefix: str):
    """Check one section against its dataclass and build it (None if its settings are wrong)."""
    kwargs, found = check_fields(cls, values)
    problems.extend(found, prefix)
    if found:
        return None
    instance = cls(**kwargs)
    cross_check = getattr(instance, "cross_check", None)  # rules across settings of the section
    if cross_check is not None:
        problems.extend(cross_check(), prefix)
    return instance


# -- training and metrics ---------------------------------------------------------------------------------

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device_check(value) -> list[Problem]:
    if isinstance(value, str) and not _DEVICE.match(value):
        return [Problem("", f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")]
    return []


@dataclass(frozen=True)
class TrainingConfig:
    """How one run trains (paper Tables 8-11 give the paper's values; presets fill them in)."""

    steps: int | None = setting(None, at_least=1, doc="optimiser steps; null: `epochs` × batches per epoch")
    epochs: float | None = setting(None, above=0, doc="passes over the training set (when steps is null)")
    batch_size: int = setting(64, at_least=1, doc="images or clips per step")
    lr: float = setting(1e-4, above=0, doc="AdamW learning rate (peak, after warmup)")
    weight_decay: float = setting(0.0, at_least=0, doc="AdamW weight decay")
    betas: tuple[float, float] = setting((0.9, 0.99), at_least=0, below=1, doc="AdamW betas")
    warmup_steps: int = setting(0, at_least=0, doc="linear warmup steps (paper Table 8)")
    schedule: Literal["cosine", "constant"] = setting("cosine", doc="learning-rate decay after warmup")
    min_lr_ratio: float = setting(0.0, at_least=0, at_most=1, doc="final lr / peak lr of the cosine schedule")
    grad_clip: float | None = setting(None, above=0, doc="gradient-norm clipping; null: none")
    device: str = setting("auto", check=_device_check, doc="auto (CUDA when present), cpu, cuda, cuda:N, mps")
    precision: Literal["fp32", "bf16"] = setting(
        "fp32", doc="bf16: autocast; the quantizer and estimator arithmetic stay float32")
    num_workers: int | None = setting(
        None, at_least=0, doc="DataLoader worker processes; null: image_folder and video_folder the run's cores less one, "
                 "other datasets 0")
    log_every: int = setting(10, at_least=1, doc="steps between logged training metrics")
    eval_every: int | None = setting(None, at_least=1, doc="steps between evaluations; null: only at the end")
    eval_batches: int | None = setting(None, at_least=1, doc="validation batches per evaluation; null: all")
    checkpoint_every: int = setting(100, at_least=1, doc="steps between checkpoints")
    checkpoint_every_min: float | None = setting(
        None, above=0, doc="minutes of wall-clock time between checkpoints, besides checkpoint_every")
    diagnostics_every: int | None = setting(
        None, at_least=1, doc="steps between gradient diagnostics; null: at each evaluation")
    usage_window: int | None = setting(None, at_least=1, doc=(
        "training metrics (train_*) average the values logged in the last this-many steps of the run; "
        "null: the last 10% of the run (end-of-training values)"))
    progress_bar: bool = setting(True, doc="show a tqdm progress bar")
    compile: bool = setting(False, doc="torch.compile the model's networks (README \"Training on GPUs\")")
    world_size: int = setting(1, at_least=1, doc="processes of the run on one machine, one per GPU or CPU "
                                                 "processes (README \"Several GPUs and nodes\")")
    accumulate: int = setting(1, at_least=1, doc="micro-batches per step of each process's slice of the batch "
                                                 "(gradient accumulation)")

    def cross_check(self) -> list[Problem]:
        if self.steps is None and self.epochs is None:
            return [Problem("", "set training.steps (or training.epochs)")]
        return self.parallel_problems()

    def parallel_problems(self, processes: int | None = None) -> list[Problem]:
        """Data parallelism over `processes` (training.world_size, or a SLURM job's tasks) and accumulation
        need equal slices of the batch, so that the step's gradient is that of the whole batch's mean loss."""
        processes = processes or self.world_size
        parts = processes * self.accumulate
        problems = []
        if self.batch_size % parts:
            lower, upper = self.batch_size // parts * parts, (self.batch_size // parts + 1) * parts
            closest = ", ".join(str(b) for b in (lower, upper) if b > 0)
            problems.append(Problem("batch_size", f"{self.batch_size} does not split into {processes} process(es) "
                                                  f"× accumulate {self.accumulate} = {parts} equal slices; "
                                                  f"use a multiple of {parts} (closest: {closest})"))
        if processes > 1 and re.match(r"^cuda:\d+$", self.device):
            problems.append(Problem("device", f"{self.device!r} names one GPU but the run has {processes} "
                                              "processes, one per GPU; use 'cuda' or 'auto'"))
        return problems


@dataclass(frozen=True)
class MetricsConfig:
    """Optional metrics and where their offline weights live (README "Metrics")."""

    fidelity: bool = setting(False, doc="r-FID / r-IS (images) or r-FVD (video) at the end of the run")
    inception_weights: str | None = setting(None, doc="Inception weights; or env ROTATION_HARNESS_INCEPTION_WEIGHTS")
    i3d_weights: str | None = setting(None, doc="I3D weights; or env ROTATION_HARNESS_I3D_WEIGHTS")
    fidelity_samples: int | None = setting(None, at_least=1, doc="cap on validation items for r-FID; null: all")
    diagnostics: bool = setting(True, doc="gradient diagnostics (cosine to the exact gradient, push/pull)")
    diagnostics_batch: int = setting(16, at_least=1, doc="validation items the diagnostics use")
    tensorboard: bool = setting(True, doc="TensorBoard events in the run folder (needs the tensorboard extra)")
    wandb: dict | None = setting(None, check=check_wandb_settings,
                                 doc="Weights & Biases run: {project: ..., mode: offline or online}")


# -- SLURM ------------------------------------------------------------------------------------------------

DEFAULT_TIMEOUT_MIN = 60
_TIME_RE = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_time(text: str) -> int:
    """A SLURM time string → whole minutes (seconds round up). Accepts SLURM's formats: "MM", "MM:SS",
    "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS". Raises ValueError otherwise."""
    match = _TIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a SLURM time; use \"HH:MM:SS\", \"D-HH:MM:SS\" or \"MM:SS\"")
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 1:  # MM
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        hours, (minutes, seconds) = 0, parts
    else:  # HH:MM:SS
        hours, minutes, seconds = parts
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is a time limit of zero")
    return math.ceil(total / 60)


def _time_check(value) -> list[Problem]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [Problem("", f"got the integer {value}, not a time string. YAML reads an unquoted H:MM or MM:SS "
                            f"as a base-60 number (10:30 becomes 630), so a time must be quoted: "
                            f'time: "10:30" (or --set \'slurm.time="10:30"\'); for minutes use timeout_min: '
                            f"{value}")]
    if not isinstance(value, str):
        return [Problem("", f'expected a quoted time string such as "HH:MM:SS", "D-HH:MM:SS" or "MM:SS", '
                            f"{got(value)}")]
    try:
        parse_time(value)
    except ValueError as error:
        return [Problem("", str(error))]
    return []


def _non_empty_check(value) -> list[Problem]:
    if isinstance(value, str) and not value.strip():
        return [Problem("", f"expected a non-empty string, {got(value)}")]
    return []


def _sbatch_options_check(value) -> list[Problem]:
    if not isinstance(value, Mapping):
        return []
    problems = []
    for option, option_value in value.items():
        if not isinstance(option, str) or not option.strip() or option.startswith("-"):
            problems.append(Problem(str(option), "expected an sbatch option name without dashes, e.g. mail-type"))
        elif not isinstance(option_value, (str, bool, int, float)):
            problems.append(Problem(option, f"expected a string, number or true, {got(option_value)}"))
    return problems


def _text(doc: str) -> Any:
    return setting(None, check=_non_empty_check, expects="a non-empty string", doc=doc)


@dataclass(frozen=True)
class SlurmConfig:
    """A suite's ``slurm:`` section (README "Running on a cluster"); null means SLURM's or submitit's default."""

    partition: str | None = _text("partition to submit to (sbatch --partition)")
    account: str | None = _text("account to charge (sbatch --account)")
    qos: str | None = _text("quality of service (sbatch --qos)")
    constraint: str | None = _text("node features (sbatch --constraint)")
    gpus_per_node: int | None = setting(None, at_least=0, doc="GPUs per node of a job (sbatch --gpus-per-node); "
                                                              "one process (task) per GPU")
    nodes: int = setting(1, at_least=1, doc="nodes per job; a run on several trains data-parallel")
    tasks_per_node: int | None = setting(None, at_least=1, doc="processes per node of a job (sbatch "
                                                               "--ntasks-per-node); null: gpus_per_node, or 1")
    cpus_per_task: int | None = setting(None, at_least=1, doc="CPUs per task; also its torch thread count")
    mem_gb: float | None = setting(None, above=0, doc="memory per job in GB (sbatch --mem)")
    time: str | None = setting(None, check=_time_check,
                               doc='time limit per job as a quoted string: "HH:MM:SS", "D-HH:MM:SS", "MM:SS", "D-HH"')
    timeout_min: int | None = setting(
        None, at_least=1, doc=f"time limit per job in minutes (instead of time; default {DEFAULT_TIMEOUT_MIN})")
    setup: tuple[str, ...] | None = setting(None, expects="a list of shell lines (strings)",
                                            doc="shell lines run before the job's command (module load ...)")
    array_parallelism: int | None = setting(None, at_least=1, doc="how many runs of the array run at once")
    max_requeues: int = setting(3, at_least=0, doc="how many time-outs a run may be requeued after")
    additional: dict | None = setting(None, check=_sbatch_options_check,
                                      expects="a mapping of sbatch option to value, e.g. {mail-type: END}",
                                      doc="extra sbatch options written as #SBATCH --key=value (true: a bare flag)")
    use_srun: bool | None = setting(None, doc="run python under srun inside the batch script (default true)")
    signal_delay_s: int | None = setting(None, at_least=0,
                                         doc="seconds before the time limit at which the run is told to checkpoint")
    job_name: str | None = _text("job name (default: the suite name)")
    wait_timeout_min: float = setting(24 * 60.0, above=0, doc="how long run-suite waits for the jobs")
    poll_interval_s: float = setting(10.0, above=0, doc="seconds between job-state polls while waiting")

    def cross_check(self) -> list[Problem]:
        if self.time is not None and self.timeout_min is not None:
            return [Problem("time", "set either time or timeout_min, not both")]
        return []

    def tasks(self) -> int:
        """Processes of one job: nodes × tasks_per_node (by default one per GPU, else one per node)."""
        return self.nodes * self.tasks_per_node_or_default()

    def tasks_per_node_or_default(self) -> int:
        return self.tasks_per_node or self.gpus_per_node or 1

    def time_limit_min(self) -> int:
        """The time limit per job in minutes: `time`, else `timeout_min`, else DEFAULT_TIMEOUT_MIN."""
        if self.time is not None:
            return parse_time(self.time)
        return self.timeout_min if self.timeout_min is not None else DEFAULT_TIMEOUT_MIN

    @classmethod
    def from_section(cls, section, where: str = "") -> SlurmConfig:
        """The validated ``slurm:`` section (None: all defaults); raises ConfigError listing every problem."""
        problems = Problems(where)
        config = _section(problems, cls, {} if section is None else section, "slurm")
        problems.raise_if_any()
        return config


# -- paper and report (read by harness/report.py) --------------------------------------------------------

def _figure_names_check(value) -> list[Problem]:
    """report.figures names entries of harness.figures.FIGURES (imported only when a suite names some)."""
    if not isinstance(value, list) or not value:
        return []
    from .figures import FIGURES

    problems = []
    for index, name in enumerate(value):
        if isinstance(name, int) and not isinstance(name, bool):
            problems.append(Problem(f"[{index}]", f"{name} is a paper figure number: those go under paper.figures "
                                                  f"(or paper.figure); report.figures takes figure names. "
                                                  f"Valid: {', '.join(sorted(FIGURES))}"))
        elif name not in FIGURES:
            problems.append(Problem(f"[{index}]", unknown_name("figure", name, FIGURES)))
    return problems


def _approach_keys_check(value) -> list[Problem]:
    """report.approach_keys names model keys (a family's params, e.g. model.quantizer), each once: the options
    that, beside the estimator, make a table row (harness/report/settings.py)."""
    if not isinstance(value, list):
        return []
    valid = sorted({f"model.{f.name}" for name in models.family_names()
                    for f in fields(models.get_family(name).Params)})
    problems = []
    for index, key in enumerate(value):
        if not isinstance(key, str):
            message = f"expected a dotted model key such as model.quantizer, {got(key)}"
        elif key == "seed":
            message = "the seed pairs the runs of a paired test; approach_keys takes model keys, e.g. model.quantizer"
        elif key.startswith("estimator"):
            message = (f"{key}: the estimator and its parameters are always part of the approach; approach_keys "
                       f"adds model keys, e.g. model.quantizer")
        elif key in ("model.family", "model.preset"):
            message = (f"{key} sets the block (the paired tests compare approaches of one model); approach_keys "
                       f"takes a family's params, e.g. model.quantizer")
        elif key not in valid:
            message = unknown_name("key", key, valid)
        elif key in value[:index]:
            message = f"{key} is listed twice; list each key once"
        else:
            continue
        problems.append(Problem(f"[{index}]", message))
    return problems


_NAMES = str | list[str] | None


@dataclass(frozen=True)
class PaperConfig:
    """A suite's ``paper:`` section: what of the paper the report compares with (harness/report.py)."""

    table: _NAMES = setting(None, doc="paper table(s) whose numbers are printed beside ours, e.g. table1")
    section: _NAMES = setting(None, doc='paper section(s) the suite reproduces, e.g. "A.2"')
    settings: list[dict] | None = setting(None, doc="which paper rows each group of runs matches")
    claim: str | None = setting(None, doc="the paper's claim, quoted in the report")
    figure: int | None = setting(None, at_least=1, doc="the paper figure the suite reproduces")
    figures: list[int] | None = setting(None, at_least=1, doc="the paper figures the suite reproduces")
    minima: list[list[float]] | None = setting(None, doc="known minima drawn in the figures (paper A.2)")


@dataclass(frozen=True)
class ReportConfig:
    """A suite's ``report:`` section (harness/report.py)."""

    baseline: str | None = setting(None, doc="the estimator the significance tests compare against")
    metrics: list[str] | None = setting(None, doc="the metric columns of the report's tables")
    approach_keys: list[str] | None = setting(
        None, check=_approach_keys_check,
        doc="model keys that belong to the row (the approach) instead of the block, e.g. model.quantizer")
    figures: list[str] | None = setting(None, check=_figure_names_check,
                                        doc="extra figures, by name in harness.figures.FIGURES")
    interval: Literal["below", "beside", "caption"] = setting(
        "below", doc="LaTeX tables: the 95% interval below the mean, beside it, or only in the caption")
    names: Literal["paper", "registry", "both"] = setting(
        "paper", doc="LaTeX tables: approaches by the paper's names, the registry's, or both")


def check_section(problems: Problems, cls, values, prefix: str):
    """Check a top-level section (e.g. paper, report) against its dataclass; None if absent or wrong."""
    return None if values is None else _section(problems, cls, values, prefix)


def key_paths(resolved: Mapping) -> set[str]:
    """Every dotted key a run's resolved dict may hold: its sections' valid keys for its family, estimator and
    dataset (an exclude rule's keys are checked against these)."""
    paths = {"seed", "model.preset"} | {f"training.{f.name}" for f in fields(TrainingConfig)}
    paths |= {f"metrics.{f.name}" for f in fields(MetricsConfig)}
    for section, key, names, params_of in (
            ("model", "family", models.family_names(), lambda n: models.get_family(n).Params),
            ("estimator", "name", estimators.names(), params_class),
            ("data", "name", data_module.dataset_names(), lambda n: data_module.DATASETS[n].Params)):
        values = resolved.get(section)
        paths.add(f"{section}.{key}")
        name = values.get(key) if isinstance(values, Mapping) else None
        if name in names:
            paths |= {f"{section}.{f.name}" for f in fields(params_of(name))}
    return paths


# -- model, estimator, data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """The model section: the family (models/<family>.py), its preset, and its `Params` instance."""

    family: str
    preset: str | None
    params: Any

    @classmethod
    def from_section(cls, section, where: str = "") -> ModelConfig:
        return _validated(_model, section, where)


@dataclass(frozen=True)
class EstimatorConfig:
    """The estimator section: a registered name and its keyword parameters (estimators/registry.py)."""

    name: str
    params: dict = field(default_factory=dict)

    def build(self) -> estimators.Estimator:
        return estimators.get(self.name, **self.params)

    @classmethod
    def from_section(cls, section, where: str = "") -> EstimatorConfig:
        return _validated(_estimator, section, where)


@dataclass(frozen=True)
class DataConfig:
    """The data section: a dataset name (harness/data/) and its `Params` instance."""

    name: str
    params: Any

    @classmethod
    def from_section(cls, section, where: str = "") -> DataConfig:
        return _validated(_data, section, where)


def _validated(build, section, where: str):
    """`build(problems, section)` for one section on its own; raises ConfigError listing every problem."""
    problems = Problems(where)
    config = build(problems, section)
    problems.raise_if_any()
    return config


def _named(problems: Problems, section, prefix: str, key: str, valid: list[str], what: str):
    """(name, the other keys) of a section whose `key` names a registered thing; name None if wrong."""
    if not isinstance(section, Mapping):
        problems.add(prefix, f"expected a mapping with {key} and its parameters, {got(section)}")
        return None, {}
    name = section.get(key)
    rest = {k: v for k, v in section.items() if k != key}
    if name is None:
        problems.add(f"{prefix}.{key}", f"missing; valid: {', '.join(valid)}")
    elif name not in valid:
        problems.add(f"{prefix}.{key}", unknown_name(what, name, valid))
        name = None
    return name, rest


def _model(problems: Problems, section) -> ModelConfig | None:
    family_name, rest = _named(problems, section, "model", "family", models.family_names(), "model family")
    if family_name is None:
        return None
    family = models.get_family(family_name)
    preset = rest.pop("preset", None)
    if preset is not None and preset not in family.presets:
        problems.add("model.preset", f"family {family_name!r} has no preset {preset!r}."
                     + did_you_mean(preset, family.presets))
    kwargs, found = check_fields(family.Params, rest)
    problems.extend(found, "model")
    if found:
        return None
    params = family.Params(**kwargs)
    for message in family.check_params(params):
        problems.add("model", f"impossible combination: {message}")
    return ModelConfig(family_name, preset, params)


def _estimator(problems: Problems, section) -> EstimatorConfig | None:
    name, rest = _named(problems, section, "estimator", "name", estimators.names(), "estimator")
    if name is None:
        return None
    kwargs, found = check_fields(params_class(name), rest)
    problems.extend(found, "estimator")
    if found:
        return None
    config = EstimatorConfig(name, kwargs)
    try:
        config.build()  # the estimator's own value checks (e.g. rotation_gamma's gamma, exact's kappa)
    except (ValueError, TypeError) as error:
        problems.add("estimator", str(error))
        return None
    return config


def _data(problems: Problems, section) -> DataConfig | None:
    name, rest = _named(problems, section, "data", "name", data_module.dataset_names(), "dataset")
    if name is None:
        return None
    dataset_params = data_module.DATASETS[name].Params
    kwargs, found = check_fields(dataset_params, rest)
    problems.extend(found, "data")
    return None if found else DataConfig(name, dataset_params(**kwargs))


def _no_data_problems(problems: Problems, family: str, resolved: Mapping, training, metrics) -> None:
    """What a family that reads no dataset (the synthetic problems) cannot be given."""
    owns = f"family {family!r} owns its inputs and reads no dataset"
    if resolved.get("data"):
        problems.add("data", f"{owns}: remove the data section")
    if training is not None and training.steps is None:
        problems.add("training.steps", f"{owns}, so its length is set in steps, not epochs: set training.steps")
    if metrics is not None and metrics.fidelity:
        problems.add("metrics.fidelity", f"{owns}: there are no images to reconstruct; set it to false")
    for key in ("world_size", "accumulate"):
        if training is not None and getattr(training, key) > 1:
            problems.add(f"training.{key}", f"{owns}: there is no batch to split; set it to 1")


# -- the run ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunConfig:
    """One run's validated configuration; `resolved` is the plain dict it was built from (record, run id)."""

    model: ModelConfig
    estimator: EstimatorConfig
    data: DataConfig | None  # None for a family that reads no dataset (ModelFamily.data_kind None)
    training: TrainingConfig
    metrics: MetricsConfig
    seed: int
    resolved: dict = field(repr=False, compare=False)

    @classmethod
    def from_resolved(cls, resolved: dict, where: str = "") -> RunConfig:
        """Validate a resolved run dict and build it; raises ConfigError listing every problem, each line
        prefixed by `where` (e.g. "suites/x.yaml: run estimator.name=ste,seed=0")."""
        problems = Problems(where)
        if not isinstance(resolved, Mapping):
            problems.add("", f"expected a mapping with sections {', '.join(RUN_SECTIONS)} and seed, {got(resolved)}")
            problems.raise_if_any()
        for key in resolved:
            if key not in RUN_SECTIONS + ("seed",):
                problems.unknown("", key, RUN_SECTIONS + ("seed",))
        model = _model(problems, resolved.get("model", {}))
        estimator = _estimator(problems, resolved.get("estimator", {}))
        family = models.get_family(model.family) if model is not None else None
        reads_data = family is None or family.data_kind is not None
        data = _data(problems, resolved.get("data", {})) if reads_data else None
        training = _section(problems, TrainingConfig, resolved.get("training", {}), "training")
        metrics = _section(problems, MetricsConfig, resolved.get("metrics", {}), "metrics")
        seed = resolved.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            problems.add("seed", f"expected an integer, {got(seed)}")
        if family is not None:
            if estimator is not None:
                reason = family.refusal(estimator.name, estimators.estimator_class(estimator.name).kind)
                if reason:
                    problems.add("estimator.name", f"{estimator.name!r} cannot be used with family "
                                                   f"{model.family!r}: {reason}")
                for message in family.estimator_problems(model.params, estimators.estimator_class(estimator.name)):
                    problems.add("estimator.name", f"{estimator.name!r} cannot be used here: {message}")
            if metrics is not None and metrics.diagnostics and getattr(model.params, "quantizer", "vq") != "vq":
                problems.add("metrics.diagnostics", f"the gradient diagnostics compare gradients at a code of a "
                                                    f"codebook; quantizer {model.params.quantizer!r} has none: set "
                                                    f"metrics.diagnostics: false")
            if not reads_data:
                _no_data_problems(problems, model.family, resolved, training, metrics)
            if data is not None:
                kind = data_module.dataset_kind(data.name)
                if kind != family.data_kind:
                    problems.add("data.name", f"dataset {data.name!r} yields {kind} data but family "
                                              f"{model.family!r} needs {family.data_kind} data")
        if training is not None and estimator is not None and training.compile:
            if estimators.estimator_class(estimator.name).needs_double_backward:
                problems.add("training.compile", f"cannot be true with estimator {estimator.name!r}: it needs a "
                                                 "double backward through the decoder, which torch.compile's "
                                                 "backward does not support; set training.compile: false")
        problems.raise_if_any()
        return cls(model, estimator, data, training, metrics, seed, copy.deepcopy(dict(resolved)))
