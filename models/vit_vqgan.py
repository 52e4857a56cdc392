"""The ViT-VQGAN family (Yu et al. 2022; paper §5.3, Table 4, Table 10).

Encoder: patch embedding (conv p×p, stride p) → + 2-D position embedding (learned or fixed sin-cos) →
pre-norm transformer blocks (MHA + GELU MLP) → final LayerNorm → (optional Linear to latent_dim) → latent
tokens laid out (B, D, h, w) for the quantizer. The quantizer factorises the codes: project to
`factorized_dim` (32 in the paper) and l2-normalise (cosine lookup), then project back to D.
Decoder: (optional Linear from latent_dim) → + position embedding → transformer → final LayerNorm → Linear
to p·p·3 values per token → un-patchify. Its `last_layer` is that Linear's weight.

Objective (the GAN machinery of models/vqgan.py): loglaplace_weight · L1 (the negative log-likelihood of a
unit-scale Laplace, up to constants) + loggaussian_weight · MSE (unit Gaussian) + perceptual_weight · LPIPS
+ codebook_weight · (codebook + β commitment) + adversarial weight · L_adv. ViT-VQGAN's adversarial weight is
a fixed number (`disc_weight` with `adaptive_disc_weight: false`); the discriminator is the PatchGAN of the
VQGAN family (ViT-VQGAN used a StyleGAN discriminator — a documented simplification).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import register_family
from .transformer_blocks import (POSITION_EMBEDDINGS, Transformer, init_weights, position_embedding_2d,
                                 unpatchify)
from .vqgan import AdversarialVQAutoencoder, GANParams, weighted_pixel_loss


@dataclass
class ViTVQGANParams(GANParams):
    resolution: int = 32
    in_channels: int = 3
    patch_size: int = 4
    hidden_dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 128
    pos_embedding: str = "learned"  # learned | sincos
    loglaplace_weight: float = 0.0
    loggaussian_weight: float = 1.0


class ViTEncoder(nn.Module):
    """Images (B, C, H, W) → latent tokens (B, latent_dim, H/p, W/p)."""

    def __init__(self, params: ViTVQGANParams):
        super().__init__()
        p, dim = params.patch_size, params.hidden_dim
        self.grid = params.resolution // p
        self.patch_embed = nn.Conv2d(params.in_channels, dim, p, stride=p)
        self.position = position_embedding_2d(self.grid, self.grid, dim, params.pos_embedding)
        self.transformer = Transformer(dim, params.depth, params.heads, params.mlp_dim)
        self.to_latent = nn.Linear(dim, params.latent_dim) if params.latent_dim != dim else nn.Identity()
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch_embed(x)  # (B, dim, h, w)
        batch, _, rows, cols = h.shape
        tokens = h.flatten(2).transpose(1, 2) + self.position()
        tokens = self.to_latent(self.transformer(tokens))
        return tokens.transpose(1, 2).reshape(batch, -1, rows, cols)


class ViTDecoder(nn.Module):
    """Latent tokens (B, latent_dim, h, w) → images (B, C, h·p, w·p)."""

    def __init__(self, params: ViTVQGANParams):
        super().__init__()
        p, dim = params.patch_size, params.hidden_dim
        self.patch, self.channels = p, params.in_channels
        grid = params.resolution // p
        self.from_latent = nn.Linear(params.latent_dim, dim) if params.latent_dim != dim else nn.Identity()
        self.position = position_embedding_2d(grid, grid, dim, params.pos_embedding)
        self.transformer = Transformer(dim, params.depth, params.heads, params.mlp_dim)
        self.to_pixels = nn.Linear(dim, params.in_channels * p * p)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, _, rows, cols = z.shape
        tokens = self.from_latent(z.flatten(2).transpose(1, 2)) + self.position()
        pixels = self.to_pixels(self.transformer(tokens))
        return unpatchify(pixels, self.channels, (rows, cols), (self.patch, self.patch))

    @property
    def last_layer(self) -> torch.Tensor:
        return self.to_pixels.weight


def _vit_model(**overrides) -> dict:
    model = {"lookup": "cosine", "factorized_dim": 32, "codebook_learning": "loss", "beta": 0.25,
             "codebook_weight": 1.0, "adaptive_disc_weight": False, "disc_factor": 1.0, "disc_norm": "batch",
             "gan_loss": "hinge", "pos_embedding": "sincos"}
    model.update(overrides)
    return model


PRESETS = {
    "cpu": {
        "model": _vit_model(resolution=32, patch_size=4, hidden_dim=64, latent_dim=64, depth=2, heads=4,
                            mlp_dim=128, num_codes=128, loglaplace_weight=1.0, loggaussian_weight=1.0,
                            perceptual_weight=0.0, disc_weight=0.1, disc_start=20, disc_layers=2,
                            disc_channels=16, pos_embedding="learned"),
        "training": {"lr": 1e-3, "weight_decay": 1e-4, "betas": [0.9, 0.99], "batch_size": 32,
                     "warmup_steps": 50, "schedule": "cosine"},
        "source": "small CPU setting of this harness (32×32, patch 4 → 8×8 tokens, hidden 64, depth 2, 4 heads, "
                  "MLP 128, codes 32-d cosine, K=128, L1 + L2, no LPIPS, adversarial 0.1 from step 20), not the "
                  "paper",
    },
    "paper": {
        "model": _vit_model(resolution=256, patch_size=8, hidden_dim=512, latent_dim=512, depth=8, heads=8,
                            mlp_dim=1024, num_codes=8192, loglaplace_weight=0.0, loggaussian_weight=1.0,
                            perceptual_weight=0.1, disc_weight=0.1, disc_start=0, disc_layers=3,
                            disc_channels=64),
        "training": {"lr": 1e-4, "weight_decay": 1e-4, "betas": [0.9, 0.99], "batch_size": 32},
        "source": "paper Table 4/10: 256² input, patch 8 (32×32 tokens), hidden 512, MLP 1024 (the "
                  "authors' config says 2048), depth 8, 8 heads, codebook dim 32 (factorised, l2-normalised), "
                  "K=8192, codebook weight 1.0, log-Laplace 0, log-Gaussian 1.0, perceptual 0.1, adversarial 0.1 "
                  "(fixed weight), batch 32, lr 1e-4, wd 1e-4. Not in the paper: β 0.25 (as the authors' VQGANs), "
                  "betas (0.9, 0.99) (ViT-VQGAN paper), disc_start 0, sin-cos position embedding, PatchGAN "
                  "discriminator instead of ViT-VQGAN's StyleGAN one",
    },
}


@register_family
class ViTVQGAN(AdversarialVQAutoencoder):
    """ViT encoder/decoder over patches, factorised cosine codes, GAN objective (paper §5.3)."""

    family_name = "vit_vqgan"
    Params = ViTVQGANParams
    presets = PRESETS

    def __init__(self, params: ViTVQGANParams, estimator):
        super().__init__(params, estimator, self.build_encoder(params), self.build_decoder(params))

    @classmethod
    def build_encoder(cls, params) -> nn.Module:
        return ViTEncoder(params)

    @classmethod
    def build_decoder(cls, params) -> nn.Module:
        return ViTDecoder(params)

    @classmethod
    def latent_shape(cls, params) -> tuple[int, ...]:
        side = params.resolution // params.patch_size
        return (params.latent_dim, side, side)

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems = super().check_params(params) + transformer_problems(params)
        if params.patch_size >= 1 and params.resolution % params.patch_size:
            problems.append(f"resolution {params.resolution} is not divisible by patch_size {params.patch_size}")
        if params.loglaplace_weight < 0 or params.loggaussian_weight < 0:
            problems.append("loglaplace_weight and loggaussian_weight must be ≥ 0")
        if params.loglaplace_weight == 0 and params.loggaussian_weight == 0 and params.perceptual_weight == 0:
            problems.append("the reconstruction objective is empty (loglaplace_weight, loggaussian_weight and "
                            "perceptual_weight are all 0)")
        return problems

    def pixel_loss(self, x, x_hat):
        """loglaplace_weight · L1 + loggaussian_weight · MSE."""
        return weighted_pixel_loss(x, x_hat, self.params.loglaplace_weight, self.params.loggaussian_weight)


def transformer_problems(params) -> list[str]:
    """Impossible transformer settings shared by the ViT and TimeSformer families."""
    problems = []
    for name in ("patch_size", "hidden_dim", "depth", "heads", "mlp_dim"):
        if getattr(params, name) < 1:
            problems.append(f"{name} must be ≥ 1, got {getattr(params, name)}")
    if problems:
        return problems
    if params.hidden_dim % params.heads:
        problems.append(f"hidden_dim {params.hidden_dim} is not divisible by heads {params.heads}")
    if params.pos_embedding not in POSITION_EMBEDDINGS:
        problems.append(f"pos_embedding {params.pos_embedding!r} is not one of {', '.join(POSITION_EMBEDDINGS)}")
    elif params.pos_embedding == "sincos" and params.hidden_dim % 4:
        problems.append(f"sincos position embedding needs hidden_dim divisible by 4, got {params.hidden_dim}")
    return problems
