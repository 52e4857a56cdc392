"""What a run shows while it trains: TensorBoard event files, an optional Weights & Biases run, and the
validation images beside their reconstructions (README "Watching runs").

The trainer (harness/train.py) calls a `RunLog` at each history row, after each evaluation, at the end of
a finished run and when the run stops. Nothing here changes training: the images are drawn with the
random number generators forked (torch.random.fork_rng), so a run's numbers are the same with logging on
or off.

- TensorBoard (`metrics.tensorboard`, on by default when the `tensorboard` package is installed: the
  `tensorboard` extra): `<run folder>/tensorboard/<varying values>/` holds the training, evaluation and
  diagnostics scalars at the steps the history has them (`train/rec_loss`, `eval/val_rec_loss`, ...;
  codebook usage and perplexity among them), the learning rate of each optimiser (`train/lr`, or
  `train/lr_<optimiser>`), and at each evaluation a histogram of the per-code counts and a grid of
  validation images above their reconstructions (video: the first clip's first frames). A resumed run
  drops the events after its checkpoint's step. `tensorboard --logdir results/<suite>` shows every run of
  the suite side by side, each named by its run id and its varying values.
- Weights & Biases (`metrics.wandb: {project: ..., mode: offline|online}`, the `wandb` extra, imported only
  when asked; offline by default): one W&B run per harness run, named by its varying values and grouped by
  suite, with the run's resolved config, the history rows and the final metrics as the run's summary.
- `reconstructions.png` in the run folder at the end of a finished run (image and video families): the
  suite report shows it per approach (harness/report/reconstructions.py).
"""
from __future__ import annotations

import importlib
import logging

import torch

from .data.loading import to_device
from .schema import Problem

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
RECONSTRUCTIONS = "reconstructions.png"
#: Validation items shown (images), and frames of the first clip shown (video).
IMAGES, FRAMES = 8, 4
WANDB_MODES = ("offline", "online")
WANDB_KEYS = ("project", "mode", "entity")
WANDB_INSTALL = "pip install 'rotation-trick-harness[wandb]' (or pip install wandb)"


def check_wandb_settings(value) -> list[Problem]:
    """metrics.wandb: a mapping with `project` (required), `mode` (offline | online) and `entity`, and the
    wandb package importable; refused when the suite is loaded, before anything trains."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [Problem("", f"expected a mapping like {{project: my-project, mode: offline}}, got {value!r}")]
    problems = [Problem(str(k), f"unknown key; valid keys: {', '.join(WANDB_KEYS)}") for k in value
                if k not in WANDB_KEYS]
    if not isinstance(value.get("project"), str) or not value.get("project"):
        problems.append(Problem("project", "required: the W&B project name, e.g. project: rotation-trick"))
    if value.get("mode", "offline") not in WANDB_MODES:
        problems.append(Problem("mode", f"{value.get('mode')!r} is not one of {', '.join(WANDB_MODES)}"))
    if "entity" in value and not isinstance(value["entity"], str):
        problems.append(Problem("entity", f"expected a W&B entity name (text), got {value['entity']!r}"))
    if not problems and import_wandb(required=False) is None:
        problems.append(Problem("", f"the wandb package is not installed: {WANDB_INSTALL}, or remove "
                                    "metrics.wandb"))
    return problems


def import_wandb(required: bool = True):
    """The wandb module; None (or, when `required`, a RuntimeError saying how to install it) without it."""
    try:
        return importlib.import_module("wandb")
    except ImportError as error:
        if required:
            raise RuntimeError(f"metrics.wandb is set but the wandb package is not installed ({error}): "
                               f"{WANDB_INSTALL}") from error
        return None


def summary_writer_class():
    """torch's TensorBoard SummaryWriter, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def _name(label: str) -> str:
    """A run's varying values as one path component: 'estimator.name=ste,seed=0' ('run' without any)."""
    return ",".join(label.split()).replace("/", "_") or "run"


def image_grid(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Originals above their reconstructions, (3, H, W) in [0, 1]; inputs in [-1, 1], (B, C, H, W) images
    or (B, C, T, H, W) clips (the first clip's first frames)."""
    from torchvision.utils import make_grid

    if x.ndim == 5:
        x, x_hat = (t[0, :, :FRAMES].transpose(0, 1) for t in (x, x_hat))
    else:
        x, x_hat = x[:IMAGES], x_hat[:IMAGES]
    pictures = torch.cat([x, x_hat]).float().cpu().add(1.0).div(2.0).clamp(0.0, 1.0)
    return make_grid(pictures, nrow=len(x), padding=2, pad_value=1.0)


class RunLog:
    """The TensorBoard writer and W&B run of one `Trainer`, opened at the first row it logs (after the
    trainer resumed, so a resumed run purges the events after its checkpoint)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.settings = trainer.config.metrics
        self.name = _name(trainer.label)
        self.suite = trainer.directory.parent.parent.name
        self.writer = self.wandb_run = None
        self.opened = False
        self.images = None

    # -- the trainer's hooks --------------------------------------------------------------------------------

    def row(self, row: dict) -> None:
        """A history row: its numbers as scalars at its step; a training row also logs the learning rates."""
        self._open()
        step = int(row["step"])
        values = {f"{row['kind']}/{k}": float(v) for k, v in row.items()
                  if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if row["kind"] == "train":  # the rate the step's update used (the scheduler has moved on since)
            schedulers = self.trainer.schedulers
            for name, scheduler in schedulers.items():
                tag = "train/lr" if len(schedulers) == 1 else f"train/lr_{name}"
                values[tag] = float(scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step))
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def evaluated(self, step: int) -> None:
        """After an evaluation: the code-count histogram and the image grid of the validation images."""
        if self.writer is None:
            return
        shown = self.reconstruct()
        if shown is None:
            return
        grid, indices, num_codes = shown
        counts = torch.bincount(indices.reshape(-1).cpu(), minlength=num_codes)
        self.writer.add_histogram("eval/code_counts", counts.float(), step)
        self.writer.add_image("eval/reconstructions", grid, step)
        self.writer.flush()

    def finished(self, metrics: dict) -> None:
        """A finished run: `reconstructions.png` in its folder and the final metrics as the W&B summary."""
        shown = self.reconstruct()
        if shown is not None:
            from torchvision.utils import save_image

            save_image(shown[0], self.trainer.directory / RECONSTRUCTIONS)
        if self.wandb_run is not None:
            self.wandb_run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        self.writer = self.wandb_run = None

    # -- helpers --------------------------------------------------------------------------------------------

    def _open(self) -> None:
        if self.opened:
            return
        self.opened = True
        trainer = self.trainer
        if not trainer.place.main:  # under data parallelism rank 0 alone writes the run's files
            return
        if self.settings.tensorboard:
            writer_class = summary_writer_class()
            if writer_class is None:
                logger.debug("%s: no TensorBoard events: the tensorboard package is not installed "
                             "(pip install 'rotation-trick-harness[tensorboard]')", trainer.directory)
            else:
                self.writer = writer_class(log_dir=str(trainer.directory / TENSORBOARD_DIR / self.name),
                                           purge_step=trainer.start or None)
        if self.settings.wandb:
            wandb = import_wandb()
            options = self.settings.wandb
            self.wandb_run = wandb.init(
                project=options["project"], entity=options.get("entity"), mode=options.get("mode", "offline"),
                group=self.suite, name=self.name, id=trainer.directory.name, resume="allow",
                dir=str(trainer.directory), config=trainer.config.resolved)

    def reconstruct(self):
        """(image grid, code indices, codebook size) of the first validation items, or None for a family
        without images. The generators are forked: training draws the same numbers as without it."""
        from models.base import VQAutoencoder

        trainer = self.trainer
        if trainer.val_set is None or not isinstance(trainer.model, VQAutoencoder):
            return None
        if self.images is None:
            count = min(IMAGES if trainer.val_set[0].ndim == 3 else 1, len(trainer.val_set))
            self.images = to_device(torch.stack([trainer.val_set[i] for i in range(count)]), trainer.device,
                                    trainer.memory_format)
        model = trainer.model
        was_training = model.training
        devices = []
        if trainer.device.type == "cuda":
            devices = [trainer.device.index if trainer.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices), torch.no_grad(), trainer.autocast():
            model.eval()
            try:
                x_hat, out = model(self.images)
            finally:
                model.train(was_training)
        return image_grid(self.images, x_hat), out.indices, model.quantizer.num_codes
