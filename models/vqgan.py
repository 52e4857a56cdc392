"""The VQGAN family (paper §5.2, Tables 2-3, Table 9) and the adversarial machinery every GAN family shares.

`AdversarialVQAutoencoder` is the common part of `vqgan`, `vit_vqgan` and `timesformer_vqgan`
(taming-transformers' VQLPIPSWithDiscriminator, Esser et al. 2021):

  generator:      L_G = L_rec + codebook_weight · aux + [step ≥ disc_start] · w · disc_factor · L_adv
                  L_rec = pixel terms + perceptual_weight · LPIPS    (the family's `reconstruction_loss`)
                  aux = the quantizer's codebook + β·commitment loss
                  L_adv = −E D(x̂)
                  w = adaptive: disc_weight · clamp(‖∇_last L_rec‖ / (‖∇_last L_adv‖ + 1e-4), 0, 1e4), detached,
                      the gradients taken at the decoder's last layer (Decoder.last_layer); or the fixed
                      disc_weight when adaptive_disc_weight is false (ViT-VQGAN's "adversarial weight").
  discriminator:  disc_factor · hinge(D(x), D(sg(x̂)))  (or the vanilla softplus loss), from disc_start on.

The estimator sees L_rec only through `QuantizerOutput.reconstruction_loss(loss_of)`; the adversarial term
uses the decoder output of `out.decoder_input` (the same decoding as L_rec for every non-decoder-aware
estimator, so it is reused). Decoder-aware estimators (hessian, exact) are refused: they run the decoder on
other inputs themselves, so there is no single decoding at whose last layer the adaptive weight could be taken
and to which the adversarial term would apply; the paper ran them only on the VQ-VAE.

Step order (`training_step`): the autoencoder step, then — from `disc_start` on — the discriminator step on
the real batch and the detached reconstruction of that same autoencoder step (taming recomputes the
reconstruction with the just-updated autoencoder; reusing it saves a forward pass). Before `disc_start` the
discriminator is not run at all and its optimizer does not step; g_loss, d_loss and disc_weight log 0.
Video (B, 3, T, H, W) goes through the 2-D discriminator and LPIPS frame by frame.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import (QuantizerParams, VQAutoencoder, adamw, backward, mean_logs, merged_statistics, micro_batches,
                   optimizer_step)
from .collectives import deferred_ema_updates, mean_over_ranks
from .discriminator import GAN_LOSSES, NORMS, NLayerDiscriminator, discriminator_loss, generator_loss, output_size
from .perceptual import LPIPS
from .registry import register_family
from .taming_cnn import Decoder, Encoder, cnn_kwargs

DECODER_AWARE_REFUSAL = (
    "decoder-aware estimators (hessian, exact) run the decoder themselves on other inputs than the decoder "
    "input, which conflicts with the adversarial term and its adaptive weight taken at the decoder's last layer; "
    "the paper ran them only on the VQ-VAE (Table 1)"
)
ADAPTIVE_WEIGHT_EPS = 1e-4
ADAPTIVE_WEIGHT_MAX = 1e4


@dataclass
class GANParams(QuantizerParams):
    """Objective settings shared by the GAN families (taming's VQLPIPSWithDiscriminator)."""

    codebook_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None  # LPIPS state dict; or env ROTATION_HARNESS_LPIPS_WEIGHTS
    disc_weight: float = 0.8  # 0: no discriminator at all
    adaptive_disc_weight: bool = True
    disc_factor: float = 1.0
    disc_start: int = 0
    disc_layers: int = 3
    disc_channels: int = 64
    disc_norm: str = "batch"  # batch | group | none
    gan_loss: str = "hinge"  # hinge | vanilla


def frames_as_images(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) unchanged; video (B, C, T, H, W) → (B·T, C, H, W)."""
    if x.ndim == 5:
        return x.transpose(1, 2).flatten(0, 1)
    return x


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """‖∇_last L_rec‖ / (‖∇_last L_adv‖ + 1e-4), clamped to [0, 1e4] and detached (taming's
    calculate_adaptive_weight, before the disc_weight factor). Under data parallelism both gradients are
    averaged over the ranks first: those of the global batch's losses, so every rank uses one weight."""
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (adv_grad,) = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)
    rec_grad, adv_grad = mean_over_ranks(rec_grad, adv_grad)
    ratio = rec_grad.float().norm() / (adv_grad.float().norm() + ADAPTIVE_WEIGHT_EPS)
    return ratio.clamp(0.0, ADAPTIVE_WEIGHT_MAX).detach()


def weighted_pixel_loss(x: torch.Tensor, x_hat: torch.Tensor, l1_weight: float, l2_weight: float) -> torch.Tensor:
    """l1_weight · mean |x̂ − x| + l2_weight · mean (x̂ − x)², in float32; terms with weight 0 are skipped."""
    x, x_hat = x.float(), x_hat.float()
    loss = x_hat.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * F.l1_loss(x_hat, x)
    if l2_weight:
        loss = loss + l2_weight * F.mse_loss(x_hat, x)
    return loss


@contextmanager
def frozen(module: nn.Module):
    """Parameters of `module` need no gradient inside the block (gradients still flow to its input)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class AdversarialVQAutoencoder(VQAutoencoder):
    """encoder → quantizer → decoder with pixel + perceptual + adversarial objective and two optimisers.

    Subclasses build the encoder/decoder (the decoder exposes `last_layer`) and define `pixel_loss`.
    """

    refused_estimators = {"decoder_aware": DECODER_AWARE_REFUSAL}
    compiled_modules = ("encoder", "decoder", "discriminator")

    def __init__(self, params: GANParams, estimator, encoder: nn.Module, decoder: nn.Module):
        super().__init__(params, estimator, encoder, decoder)
        refusal = self.refusal(self.quantizer.estimator.name, self.quantizer.estimator.kind)
        if refusal:
            raise ValueError(f"family {self.family_name!r} cannot use estimator "
                             f"{self.quantizer.estimator.name!r}: {refusal}")
        self.discriminator = (
            NLayerDiscriminator(3, params.disc_channels, params.disc_layers, params.disc_norm)
            if params.disc_weight > 0 else None
        )
        self.perceptual = LPIPS(params.perceptual_weights) if params.perceptual_weight > 0 else None

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems = super().check_params(params)
        if params.disc_norm not in NORMS:
            problems.append(f"disc_norm {params.disc_norm!r} is not one of {', '.join(NORMS)}")
        if params.gan_loss not in GAN_LOSSES:
            problems.append(f"gan_loss {params.gan_loss!r} is not one of {', '.join(GAN_LOSSES)}")
        for name in ("codebook_weight", "perceptual_weight", "disc_weight", "disc_factor"):
            if getattr(params, name) < 0:
                problems.append(f"{name} must be ≥ 0, got {getattr(params, name)}")
        if params.disc_start < 0:
            problems.append(f"disc_start must be ≥ 0, got {params.disc_start}")
        if params.disc_weight > 0:
            if params.disc_layers < 1:
                problems.append(f"disc_layers must be ≥ 1, got {params.disc_layers}")
            elif output_size(params.resolution, params.disc_layers) < 1:
                problems.append(f"resolution {params.resolution} is too small for a discriminator with "
                                f"disc_layers={params.disc_layers} (needs ≥ {3 * 2 ** params.disc_layers})")
        return problems

    # -- the objective ------------------------------------------------------------------------------------
    def pixel_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_reconstruction(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """L_rec = pixel terms + perceptual_weight · mean LPIPS (frame by frame for video)."""
        loss = self.pixel_loss(x, x_hat)
        if self.perceptual is not None:
            lpips = self.perceptual(frames_as_images(x).float(), frames_as_images(x_hat).float()).mean()
            loss = loss + self.params.perceptual_weight * lpips
        return loss

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The reconstruction objective the estimator (and the gradient diagnostics) see: L_rec."""
        return self.generator_reconstruction(x, x_hat)

    def validation_losses(self, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
        """val_rec_loss stays the MSE (paper §5.1's reconstruction loss); val_loss is the generator's L_rec (pixel + perceptual)."""
        return {**super().validation_losses(x, x_hat), "val_loss": float(self.generator_reconstruction(x, x_hat))}

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.last_layer

    def adversarial_weight(self, rec_loss: torch.Tensor, adv_loss: torch.Tensor) -> torch.Tensor:
        if not self.params.adaptive_disc_weight:
            return rec_loss.new_tensor(self.params.disc_weight)
        return adaptive_weight(rec_loss, adv_loss, self.last_layer) * self.params.disc_weight

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.params.disc_start

    def generator_terms(self, x: torch.Tensor, gan_on: bool):
        """(generator loss, reconstruction x̂ of out.decoder_input, its loss logs, the quantizer output)."""
        out = self.quantizer(self.encode(x))
        decoded = {}

        def loss_of(z):
            x_hat = self.decode(z)
            if z is out.decoder_input:
                decoded["x_hat"] = x_hat
            return self.reconstruction_loss(x, x_hat)

        rec_backward, rec = out.reconstruction_loss(loss_of)
        x_hat = decoded["x_hat"] if "x_hat" in decoded else self.decode(out.decoder_input)
        aux = self.params.codebook_weight * out.aux_loss
        loss = rec_backward + aux
        logs = {"rec_loss": rec.detach(), "aux_loss": out.aux_loss.detach(),
                "g_loss": 0.0, "disc_weight": 0.0}
        if gan_on:
            with frozen(self.discriminator):
                g_loss = generator_loss(self.discriminator(frames_as_images(x_hat)))
            weight = self.adversarial_weight(rec_backward, g_loss)
            loss = loss + weight * self.params.disc_factor * g_loss
            logs.update(g_loss=g_loss.detach(), disc_weight=weight.detach())
        return loss, x_hat, logs, out

    def discriminator_step_loss(self, x: torch.Tensor, x_hat: torch.Tensor):
        logits_real = self.discriminator(frames_as_images(x.detach()))
        logits_fake = self.discriminator(frames_as_images(x_hat.detach()))
        d_loss = self.params.disc_factor * discriminator_loss(logits_real, logits_fake, self.params.gan_loss)
        return d_loss, {"d_loss": d_loss.detach(), "logits_real": logits_real.detach().mean(),
                        "logits_fake": logits_fake.detach().mean()}

    # -- training -----------------------------------------------------------------------------------------
    def autoencoder_parameters(self):
        for name in ("encoder", "decoder", "quantizer"):
            yield from getattr(self, name).parameters()

    def configure_optimizers(self, training):
        optimizers = {"autoencoder": adamw(list(self.autoencoder_parameters()), training)}
        if self.discriminator is not None:
            optimizers["discriminator"] = adamw(self.discriminator.parameters(), training)
        return optimizers

    def training_step(self, batch, ctx, optimizers):
        """The autoencoder step, then the discriminator step, each over `ctx.accumulate` micro-batches of
        `batch` (this rank's slice of the step's batch); the discriminator sees each micro-batch with its
        reconstruction."""
        gan_on = self.gan_active(ctx.step)
        chunks = micro_batches(batch, ctx.accumulate)
        optimizer = optimizers["autoencoder"]
        optimizer.zero_grad(set_to_none=True)
        parts, outputs, reconstructions = [], [], []
        with deferred_ema_updates(self, ctx.accumulate > 1):
            for x in chunks:
                with ctx.autocast():
                    loss, x_hat, logs, out = self.generator_terms(x, gan_on)
                backward(loss, ctx.accumulate)
                parts.append({**logs, "loss": loss.detach()})
                outputs.append(out)
                reconstructions.append(x_hat.detach())
        optimizer_step(optimizer, ctx.grad_clip)
        logs = mean_logs(parts)
        loss = logs.pop("loss")
        logs = {**logs, **merged_statistics(outputs), "loss": loss, "d_loss": 0.0, "logits_real": 0.0,
                "logits_fake": 0.0}
        if gan_on:
            optimizer = optimizers["discriminator"]
            optimizer.zero_grad(set_to_none=True)
            d_parts = []
            for x, x_hat in zip(chunks, reconstructions):
                with ctx.autocast():
                    d_loss, d_logs = self.discriminator_step_loss(x, x_hat)
                backward(d_loss, ctx.accumulate)
                d_parts.append(d_logs)
            optimizer_step(optimizer, ctx.grad_clip)
            logs.update(mean_logs(d_parts))
        return logs

# ------------------------------------------------------------------------------------------------------
# The taming VQGAN
# ------------------------------------------------------------------------------------------------------

@dataclass
class VQGANParams(GANParams):
    resolution: int = 32
    in_channels: int = 3
    channels: int = 16
    channel_mult: list = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 1
    attn_resolutions: list = field(default_factory=list)
    dropout: float = 0.0
    l1_weight: float = 1.0
    l2_weight: float = 0.0


_PAPER_QUANTIZER = {"lookup": "euclidean", "codebook_learning": "loss", "beta": 0.25, "codebook_weight": 1.0}
_PAPER_TRAINING = {"lr": 4.5e-6, "weight_decay": 0.0, "betas": [0.5, 0.9], "schedule": "constant",
                   "warmup_steps": 0}
_TRAINING_NOTE = ("lr 4.5e-6 from Table 9; betas (0.5, 0.9), no weight decay and a constant lr as "
                  "taming-transformers' VQModel.configure_optimizers (not stated in the paper); codebook "
                  "initialised normal with the variance of taming's uniform(−1/K, 1/K) (std 1/(K√3))")


def _paper(latent_hw: int, latent_dim: int, codes: int, channel_mult: list, attn: list, disc_weight: float,
           disc_start: int, disc_layers: int, batch: int, source: str) -> dict:
    return {
        "model": {"resolution": 256, "channels": 128, "channel_mult": channel_mult, "num_res_blocks": 2,
                  "attn_resolutions": attn, "num_codes": codes, "latent_dim": latent_dim, **_PAPER_QUANTIZER,
                  "init_std": 1.0 / (codes * 3 ** 0.5),
                  "l1_weight": 1.0, "l2_weight": 0.0, "perceptual_weight": 1.0, "disc_weight": disc_weight,
                  "adaptive_disc_weight": True, "disc_factor": 1.0, "disc_start": disc_start,
                  "disc_layers": disc_layers, "disc_channels": 64, "disc_norm": "batch", "gan_loss": "hinge"},
        "training": {**_PAPER_TRAINING, "batch_size": batch},
        "source": f"paper Tables 2-3/9: latent {latent_hw}×{latent_hw}×{latent_dim}, K={codes}, "
                  f"channel mult {channel_mult}, disc weight {disc_weight}, codebook weight 1.0, β 0.25, batch "
                  f"{batch}; {source}; {_TRAINING_NOTE}",
    }


PRESETS = {
    "cpu": {
        "model": {"resolution": 32, "channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                  "attn_resolutions": [], "num_codes": 128, "latent_dim": 16, **_PAPER_QUANTIZER,
                  "l1_weight": 1.0, "l2_weight": 1.0, "perceptual_weight": 0.0, "disc_weight": 0.8,
                  "adaptive_disc_weight": True, "disc_factor": 1.0, "disc_start": 20, "disc_layers": 2,
                  "disc_channels": 16, "disc_norm": "batch", "gan_loss": "hinge"},
        "training": {"lr": 2e-4, "weight_decay": 0.0, "betas": [0.5, 0.9], "batch_size": 32,
                     "warmup_steps": 0, "schedule": "constant"},
        "source": "small CPU setting of this harness (32×32 → 8×8×16 latents, K=128, L1 + L2, no LPIPS, tiny "
                  "discriminator from step 20), not the paper",
    },
    "paper_taming": _paper(
        16, 256, 1024, [1, 1, 2, 2, 4], [16], 0.8, 250001, 3, 48,
        "128 channels, 2 res blocks, attention at 16, L1 + LPIPS (perceptual weight 1.0); disc_start 250001 and "
        "the 3-layer discriminator from taming-transformers configs/imagenet_vqgan.yaml"),
    "paper_taming_faces": _paper(
        16, 256, 1024, [1, 1, 2, 2, 4], [16], 0.8, 30001, 3, 48,
        "paper_taming for Table 2's FFHQ + CelebA-HQ run: disc_start 30001 as taming-transformers "
        "configs/faceshq_vqgan.yaml (ImageNet's 250001 falls after the end of a faces run)"),
    "paper_ldm_f4": _paper(
        64, 3, 8192, [1, 2, 4], [], 0.75, 0, 3, 16,
        "128 channels, 2 res blocks, no attention, disc_start 0, 3-layer discriminator as latent-diffusion "
        "models/first_stage_models/vq-f4/config.yaml"),
    "paper_ldm_f8": _paper(
        32, 4, 16384, [1, 2, 2, 4], [32], 0.6, 1, 2, 16,
        "128 channels, 2 res blocks, attention at 32, disc_start 1 and a 2-layer discriminator as "
        "latent-diffusion models/first_stage_models/vq-f8/config.yaml"),
}


@register_family
class VQGAN(AdversarialVQAutoencoder):
    """Taming-transformers VQGAN (Esser et al. 2021): CNN encoder/decoder, PatchGAN, LPIPS (paper §5.2)."""

    family_name = "vqgan"
    channels_last = True
    Params = VQGANParams
    presets = PRESETS

    def __init__(self, params: VQGANParams, estimator):
        super().__init__(params, estimator, self.build_encoder(params), self.build_decoder(params))

    @classmethod
    def build_encoder(cls, params: VQGANParams) -> Encoder:
        return Encoder(params.in_channels, **cnn_kwargs(params))

    @classmethod
    def build_decoder(cls, params: VQGANParams) -> Decoder:
        return Decoder(params.in_channels, **cnn_kwargs(params))

    @classmethod
    def latent_shape(cls, params: VQGANParams) -> tuple[int, ...]:
        """(D, h, w) of the encoder output for one image."""
        side = params.resolution // 2 ** (len(params.channel_mult) - 1)
        return (params.latent_dim, side, side)

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems = super().check_params(params)
        factor = 2 ** (len(params.channel_mult) - 1)
        if params.resolution % factor:
            problems.append(f"resolution {params.resolution} is not divisible by 2^(len(channel_mult)-1) = {factor}")
        if params.l1_weight < 0 or params.l2_weight < 0:
            problems.append("l1_weight and l2_weight must be ≥ 0")
        if params.l1_weight == 0 and params.l2_weight == 0 and params.perceptual_weight == 0:
            problems.append("the reconstruction objective is empty (l1_weight, l2_weight and perceptual_weight "
                            "are all 0)")
        return problems

    def pixel_loss(self, x, x_hat):
        """l1_weight · L1 + l2_weight · MSE (taming uses L1 alone; the cpu preset adds L2)."""
        return weighted_pixel_loss(x, x_hat, self.params.l1_weight, self.params.l2_weight)
