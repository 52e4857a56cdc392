"""The metrics registry: every metric a run's record holds, with the header the tables print, how it is
shown, which direction is better and what it measures. Tables, plots, the paper comparison, report.md's
"Metric definitions" and the README's metric table (`markdown_metric_table`) all read it from here.

Where the paper reports a metric (paper Tables 1-7), the definition says how ours differs from the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass

ARROWS = {"up": "↑", "down": "↓"}


@dataclass(frozen=True)
class Metric:
    """One recorded metric. `better` is "up" (higher is better), "down", or None (no better direction);
    `percent`: stored as a fraction, shown ×100."""

    name: str
    header: str
    better: str | None
    definition: str
    percent: bool = False

    @property
    def arrow(self) -> str:
        return ARROWS.get(self.better, "")

    @property
    def label(self) -> str:
        """The header with its arrow, e.g. 'Val rec. ↓'."""
        return f"{self.header} {self.arrow}".strip()


#: Where every training metric's definition says which steps it averages.
_END_OF_TRAINING = ("an end-of-training value: the mean of the values logged in the last 10% of the run's steps "
                    "(the last `training.usage_window` steps when set; report.md gives the steps)")

_REGISTERED = [
    Metric("train_usage_batch", "Usage (%)", "up", percent=True, definition=(
        "fraction of the K codes used in each training batch, " + _END_OF_TRAINING + ". This is the paper's "
        "\"codebook usage\" as its text defines it (\"the percentage of codebook vectors "
        "that are used in each batch\", paper §5.1). The authors' code instead counts the distinct codes over "
        "a validation window of 256 images, divided by K; the two compare in direction, not in size.")),
    Metric("val_usage", "Usage, val set (%)", "up", percent=True, definition=(
        "fraction of the K codes used at least once over the whole validation set (the definition other "
        "libraries use).")),
    Metric("val_usage_batch", "Usage, val batch (%)", "up", percent=True, definition=(
        "fraction of the K codes used in a validation batch, averaged over the validation batches.")),
    Metric("val_dead_codes", "Dead codes (%)", "down", percent=True, definition=(
        "fraction of the K codes never used over the validation set.")),
    Metric("val_perplexity", "Perplexity", "up", definition=(
        "exp(entropy) of the code histogram over the validation set.")),
    Metric("train_quant_error", "Quant. err.", "down", definition=(
        "per-element mean of (e − q)² in the lookup space on training batches, `F.mse_loss(q, e)`, as the "
        "authors log it (the paper writes ‖e − q‖², paper Table 1); " + _END_OF_TRAINING + ".")),
    Metric("val_quant_error", "Val quant. err.", "down", definition=(
        "the same per-element mean of (e − q)² on the validation set.")),
    Metric("train_rec_loss", "Train rec.", "down", definition=(
        "the reconstruction objective on training batches; " + _END_OF_TRAINING + ". MSE on images in [-1, 1] "
        "for the VQ-VAE (the paper: MSE on CLIP-normalised images), the "
        "generator's reconstruction objective L_rec (pixel + perceptual terms) for the GAN families.")),
    Metric("train_loss", "Train loss", "down", definition=(
        "the loss the autoencoder's optimiser minimises (reconstruction plus the quantizer's auxiliary terms; "
        "for the GAN families the generator's loss, with its adversarial term once the discriminator starts), "
        + _END_OF_TRAINING + ".")),
    Metric("val_rec_loss", "Val rec.", "down", definition=(
        "reconstruction MSE on the validation set (images in [-1, 1]; the paper: CLIP-normalised).")),
    Metric("val_loss", "Val loss", "down", definition=(
        "GAN families: the generator's reconstruction objective L_rec (pixel + perceptual terms) on the "
        "validation set, which taming-transformers logs as val/rec_loss and the paper's VQGAN, ViT-VQGAN and "
        "TimeSformer tables report as \"Valid Loss\" (val_rec_loss stays the plain MSE).")),
    Metric("val_psnr", "PSNR", "up", definition=(
        "PSNR in dB of the validation reconstructions (peak-to-peak range 2).")),
    Metric("r_fid", "r-FID", "down", definition=(
        "FID between the validation images and their reconstructions (torch-fidelity, offline Inception "
        "weights). Without weights the record has no number and `notes.fidelity` says why.")),
    Metric("r_is", "r-IS", "up", definition=(
        "Inception score of the validation reconstructions (torch-fidelity, offline Inception weights).")),
    Metric("r_fvd", "r-FVD", "down", definition=(
        "FVD between validation clips and their reconstructions (a TorchScript I3D feature extractor, "
        "offline weights).")),
    Metric("grad_cosine_exact", "cos(∇, exact)", "up", definition=(
        "on a fixed validation batch, the cosine between the estimator's gradient at the encoder output and "
        "the exact autoencoder gradient ∇_e L(D(e)) (paper §3).")),
    Metric("obtuse_fraction", "Obtuse", None, definition=(
        "fraction of tokens whose angle between e and q is obtuse: the limitation of paper §6.")),
    Metric("push_pull", "Push-pull", None, definition=(
        "relative change in the mean pairwise distance between tokens that share a code after one gradient "
        "step (step size: 1% of ‖e‖ on average); positive when they are pushed apart, negative when pulled "
        "together (paper §4.3). Compare an estimator's value with the STE's: under the STE it is 0 only when "
        "all tokens of a cell share one gradient. Not computed for sampling estimators.")),
    Metric("steps", "Steps", None, definition="training steps the run took."),
    Metric("wall_time_s", "Wall time (s)", None, definition=(
        "wall-clock seconds the run took (training, evaluations and fidelity metrics), summed over resumes.")),
]

#: Every registered metric by name, in the order of the README's table.
METRICS: dict[str, Metric] = {m.name: m for m in _REGISTERED}

#: Columns of a suite's own table (not a paper table), in this order, when measured.
SUITE_TABLE_METRICS = ("train_usage_batch", "val_usage", "train_rec_loss", "train_quant_error", "val_rec_loss",
                       "val_loss", "val_psnr", "r_fid", "r_is", "r_fvd", "grad_cosine_exact")
#: The reconstruction-fidelity metrics report.md explains when they are missing.
FIDELITY_METRICS = ("r_fid", "r_is", "r_fvd")


def metric(name: str) -> Metric:
    """The registered metric, or an unregistered one (a family's own metric, e.g. the synthetic problems'):
    its name as header, no better direction, no definition."""
    return METRICS.get(name) or Metric(name, name, None, "")


def markdown_metric_table() -> str:
    """The README's metric table: one row per registered metric."""
    lines = ["| metric | header | better | definition |", "|---|---|---|---|"]
    for m in METRICS.values():
        better = {"up": "↑ higher", "down": "↓ lower"}.get(m.better, "—")
        lines.append(f"| `{m.name}` | {m.header} | {better} | {m.definition} |")
    return "\n".join(lines)
