"""The taming-transformers convolutional encoder and decoder (Esser et al. 2021), used by the paper's VQ-VAE
(Table 8) and VQGAN (Table 9) settings: residual blocks with GroupNorm and swish, a channel multiplier per
resolution level, optional self-attention at chosen resolutions, and a mid block (res, attn, res).
Each level but the last halves the resolution, so the latent is input / 2^(len(channel_mult) − 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import estimators


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups where the channels allow (taming's choice), fewer for small CPU models."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


def spatial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool) -> torch.Tensor:
    """softmax(q kᵀ / √c) v for (batch, tokens, c) operands: through F.scaled_dot_product_attention (`fused`),
    or written out, which is twice differentiable (the fused kernels have no second derivative)."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection.

    On GPUs the attention goes through F.scaled_dot_product_attention (fused kernels), except with
    `double_backward`, where it is written out: the Hessian estimator (paper §3) differentiates the
    decoder's gradient again. On the CPU it is always written out, which keeps CPU results (and the
    reference results made from them) bit-identical to earlier versions of this harness.
    """

    def __init__(self, channels: int, double_backward: bool = False):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.double_backward = double_backward

    def fused_on(self, device: torch.device) -> bool:
        """Whether the attention of inputs on `device` goes through scaled_dot_product_attention."""
        return not self.double_backward and device.type != "cpu"

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)  # (b, hw, c) each
        out = spatial_attention(q, k, v, fused=self.fused_on(x.device))
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


def cnn_kwargs(params, double_backward: bool = False) -> dict:
    """The Encoder/Decoder keyword arguments from a family's params (VQ-VAE and VQGAN share them);
    `double_backward`: write the attention out (see `AttentionBlock`)."""
    return dict(channels=params.channels, channel_mult=list(params.channel_mult),
                num_res_blocks=params.num_res_blocks, attn_resolutions=list(params.attn_resolutions),
                resolution=params.resolution, z_channels=params.latent_dim, dropout=params.dropout,
                double_backward=double_backward)


def needs_double_backward(estimator) -> bool:
    """Whether `estimator` (an instance or a registered name) differentiates the decoder's gradient again."""
    if isinstance(estimator, str):
        return estimators.estimator_class(estimator).needs_double_backward
    return estimator.needs_double_backward


class Encoder(nn.Module):
    def __init__(self, in_channels, channels, channel_mult, num_res_blocks, attn_resolutions, resolution,
                 z_channels, dropout=0.0, double_backward=False):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        blocks: list[nn.Module] = []
        current = resolution
        block_in = channels
        for level, mult in enumerate(channel_mult):
            block_out = channels * mult
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if current in attn_resolutions:
                    blocks.append(AttentionBlock(block_in, double_backward))
            if level != len(channel_mult) - 1:
                blocks.append(nn.Conv2d(block_in, block_in, 3, stride=2, padding=1))
                current //= 2
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResnetBlock(block_in, block_in, dropout),
                                 AttentionBlock(block_in, double_backward),
                                 ResnetBlock(block_in, block_in, dropout))
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, out_channels, channels, channel_mult, num_res_blocks, attn_resolutions, resolution,
                 z_channels, dropout=0.0, double_backward=False):
        super().__init__()
        block_in = channels * channel_mult[-1]
        current = resolution // 2 ** (len(channel_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Sequential(ResnetBlock(block_in, block_in, dropout),
                                 AttentionBlock(block_in, double_backward),
                                 ResnetBlock(block_in, block_in, dropout))
        blocks: list[nn.Module] = []
        for level in reversed(range(len(channel_mult))):
            block_out = channels * channel_mult[level]
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if current in attn_resolutions:
                    blocks.append(AttentionBlock(block_in, double_backward))
            if level != 0:
                blocks.append(Upsample(block_in))
                current *= 2
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the VQGAN's adaptive discriminator weight is computed at."""
        return self.conv_out.weight
