"""The TimeSformer-VQGAN family (paper §5.3, Table 5, Table 11): a video VQGAN whose encoder and decoder are
TimeSformers (Bertasius et al. 2021) with DIVIDED space-time attention.

Input clips (B, 3, T, H, W) in [-1, 1] are cut into tubelets of pt × p × p (pt = `temporal_patch_size`,
1 by default: one frame per tubelet) by a strided Conv3d, giving tokens on a (T', h, w) grid, T' = T/pt,
h = H/p, w = W/p, plus a learned or sin-cos spatial embedding (shared by all frames) and a temporal
embedding (shared by all positions). Each block does, in order (all pre-norm, residual):
  1. time attention: each token attends to the tokens at the same patch position in every frame;
  2. space attention: each token attends to the tokens of its own frame;
  3. MLP (GELU).
A final LayerNorm ends each stack. Latents are laid out (B, D, T', h, w) for the quantizer (factorised,
cosine lookup, as ViT-VQGAN). The decoder mirrors the encoder and ends with a Linear to 3·pt·p·p values per
token and an un-patchify; its weight is `last_layer`.

Objective: the ViT-VQGAN one (models/vit_vqgan.py, machinery in models/vqgan.py); LPIPS and the PatchGAN
discriminator see the clip frame by frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import register_family
from .transformer_blocks import (MLP, Attention, init_weights, position_embedding_1d, position_embedding_2d,
                                 unpatchify)
from .vit_vqgan import ViTVQGAN, ViTVQGANParams


@dataclass
class TimeSformerVQGANParams(ViTVQGANParams):
    frames: int = 8
    temporal_patch_size: int = 1


class DividedSpaceTimeBlock(nn.Module):
    """Tokens (B, T, N, D): time attention (over T, per position), space attention (over N, per frame), MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm_time = nn.LayerNorm(dim)
        self.attn_time = Attention(dim, heads)
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def time_attention(self, x: torch.Tensor) -> torch.Tensor:
        """x + attention across frames, separately for every patch position."""
        batch, frames, positions, dim = x.shape
        h = x.transpose(1, 2).reshape(batch * positions, frames, dim)
        h = self.attn_time(self.norm_time(h))
        return x + h.reshape(batch, positions, frames, dim).transpose(1, 2)

    def space_attention(self, x: torch.Tensor) -> torch.Tensor:
        """x + attention across the patches of each frame, separately for every frame."""
        batch, frames, positions, dim = x.shape
        h = self.attn_space(self.norm_space(x.reshape(batch * frames, positions, dim)))
        return x + h.reshape(batch, frames, positions, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.space_attention(self.time_attention(x))
        return x + self.mlp(self.norm_mlp(x))


class DividedTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class _VideoPositions(nn.Module):
    """Spatial (h·w, D) + temporal (T', D) embeddings, broadcast to (1, T', h·w, D)."""

    def __init__(self, params: TimeSformerVQGANParams):
        super().__init__()
        grid = params.resolution // params.patch_size
        self.space = position_embedding_2d(grid, grid, params.hidden_dim, params.pos_embedding)
        self.time = position_embedding_1d(params.frames // params.temporal_patch_size, params.hidden_dim,
                                          params.pos_embedding)

    def forward(self) -> torch.Tensor:
        return self.time()[None, :, None, :] + self.space()[None, None, :, :]


class TimeSformerEncoder(nn.Module):
    """Clips (B, C, T, H, W) → latents (B, latent_dim, T/pt, H/p, W/p)."""

    def __init__(self, params: TimeSformerVQGANParams):
        super().__init__()
        p, pt, dim = params.patch_size, params.temporal_patch_size, params.hidden_dim
        self.patch_embed = nn.Conv3d(params.in_channels, dim, (pt, p, p), stride=(pt, p, p))
        self.position = _VideoPositions(params)
        self.transformer = DividedTransformer(dim, params.depth, params.heads, params.mlp_dim)
        self.to_latent = nn.Linear(dim, params.latent_dim) if params.latent_dim != dim else nn.Identity()
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch_embed(x)  # (B, dim, T', h, w)
        batch, _, frames, rows, cols = h.shape
        tokens = h.flatten(3).permute(0, 2, 3, 1) + self.position()  # (B, T', h·w, dim)
        tokens = self.to_latent(self.transformer(tokens))
        return tokens.permute(0, 3, 1, 2).reshape(batch, -1, frames, rows, cols)


class TimeSformerDecoder(nn.Module):
    """Latents (B, latent_dim, T', h, w) → clips (B, C, T'·pt, h·p, w·p)."""

    def __init__(self, params: TimeSformerVQGANParams):
        super().__init__()
        p, pt, dim = params.patch_size, params.temporal_patch_size, params.hidden_dim
        self.patch, self.channels = (pt, p, p), params.in_channels
        self.from_latent = nn.Linear(params.latent_dim, dim) if params.latent_dim != dim else nn.Identity()
        self.position = _VideoPositions(params)
        self.transformer = DividedTransformer(dim, params.depth, params.heads, params.mlp_dim)
        self.to_pixels = nn.Linear(dim, params.in_channels * pt * p * p)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, _, frames, rows, cols = z.shape
        tokens = self.from_latent(z.flatten(3).permute(0, 2, 3, 1)) + self.position()  # (B, T', h·w, dim)
        pixels = self.to_pixels(self.transformer(tokens)).reshape(batch, frames * rows * cols, -1)
        return unpatchify(pixels, self.channels, (frames, rows, cols), self.patch)

    @property
    def last_layer(self) -> torch.Tensor:
        return self.to_pixels.weight


def _video_model(**overrides) -> dict:
    model = {"lookup": "cosine", "factorized_dim": 32, "codebook_learning": "loss", "beta": 0.25,
             "codebook_weight": 1.0, "loglaplace_weight": 0.0, "loggaussian_weight": 1.0, "perceptual_weight": 0.0,
             "disc_weight": 0.1, "adaptive_disc_weight": False, "disc_factor": 1.0, "disc_start": 0,
             "disc_layers": 3, "disc_channels": 64, "disc_norm": "batch", "gan_loss": "hinge",
             "pos_embedding": "learned", "temporal_patch_size": 1, "hidden_dim": 256, "latent_dim": 256,
             "mlp_dim": 768, "depth": 8, "heads": 4}
    model.update(overrides)
    return model


_NOT_IN_PAPER = ("Not in the paper: temporal patch size 1 (the table gives the spatial patch only); the loss weights "
                 "(L2 1.0, no LPIPS on video, fixed adversarial weight 0.1 from step 0 with a per-frame PatchGAN, "
                 "codebook weight 1.0, β 0.25) follow the ViT-VQGAN setting; betas (0.9, 0.99); learned space and "
                 "time position embeddings as TimeSformer; batch size not stated (the harness default applies)")

PRESETS = {
    "cpu": {
        "model": _video_model(frames=8, resolution=32, patch_size=4, hidden_dim=64, latent_dim=64, depth=2,
                              heads=4, mlp_dim=128, num_codes=128, loglaplace_weight=1.0, loggaussian_weight=1.0,
                              disc_start=20, disc_layers=2, disc_channels=16),
        "training": {"lr": 1e-3, "weight_decay": 1e-4, "betas": [0.9, 0.99], "batch_size": 8,
                     "warmup_steps": 50, "schedule": "cosine"},
        "source": "small CPU setting of this harness (8 frames of 32×32, patch 4 → 8×8×8 tokens, hidden 64, "
                  "depth 2, 4 heads, codes 32-d cosine, K=128, L1 + L2, adversarial 0.1 from step 20), not the paper",
    },
    "paper_bair": {
        "model": _video_model(frames=16, resolution=64, patch_size=2, num_codes=1024),
        "training": {"lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.99]},
        "source": "paper Table 5/11, BAIR 16×64×64×3: patch 2 (16×32×32 tokens), hidden 256, MLP 768, "
                  "depth 8, 4 heads, codebook dim 32, K=1024, lr 1e-4. " + _NOT_IN_PAPER,
    },
    "paper_ucf101": {
        "model": _video_model(frames=16, resolution=128, patch_size=4, num_codes=2048),
        "training": {"lr": 4.5e-6, "weight_decay": 0.0, "betas": [0.9, 0.99]},
        "source": "paper Table 11, UCF-101 16×128×128×3: patch 4 (16×32×32 tokens), hidden 256, MLP "
                  "768, depth 8, 4 heads, codebook dim 32, K=2048 (Table 5 says 1024; Table 11 and the authors' "
                  "config say 2048), lr 4.5e-6. " + _NOT_IN_PAPER,
    },
}


@register_family
class TimeSformerVQGAN(ViTVQGAN):
    """Video VQGAN with divided space-time attention (TimeSformer) encoder/decoder (paper §5.3, Table 5)."""

    family_name = "timesformer_vqgan"
    Params = TimeSformerVQGANParams
    presets = PRESETS
    data_kind = "video"

    @classmethod
    def build_encoder(cls, params) -> nn.Module:
        return TimeSformerEncoder(params)

    @classmethod
    def build_decoder(cls, params) -> nn.Module:
        return TimeSformerDecoder(params)

    @classmethod
    def latent_shape(cls, params) -> tuple[int, ...]:
        """(D, T', h, w) of the encoder output for one clip."""
        side = params.resolution // params.patch_size
        return (params.latent_dim, params.frames // params.temporal_patch_size, side, side)

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems = super().check_params(params)
        if params.temporal_patch_size < 1:
            problems.append(f"temporal_patch_size must be ≥ 1, got {params.temporal_patch_size}")
        elif params.frames % params.temporal_patch_size:
            problems.append(f"frames {params.frames} is not divisible by temporal_patch_size "
                            f"{params.temporal_patch_size}")
        return problems
