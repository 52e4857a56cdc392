"""The PatchGAN discriminator of the VQGAN families (pix2pix's NLayerDiscriminator as used by
taming-transformers) and the GAN losses.

Layers: conv 4×4 stride 2 + LeakyReLU(0.2); then `n_layers − 1` × [conv 4×4 stride 2, norm, LeakyReLU(0.2)]
with channels ndf·min(2^n, 8); then conv 4×4 stride 1, norm, LeakyReLU(0.2); then a conv 4×4 stride 1 to one
logit per patch. Norm: BatchNorm (taming's default; convolutions before it have no bias; over the global batch
under data parallelism), GroupNorm, or none.
Initialisation as taming's `weights_init`: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .collectives import SyncedBatchNorm2d

NORMS = ("batch", "group", "none")
GAN_LOSSES = ("hinge", "vanilla")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return SyncedBatchNorm2d(channels)  # BatchNorm2d over the global batch under data parallelism
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.Identity()


class NLayerDiscriminator(nn.Module):
    """PatchGAN: images (B, C, H, W) → patch logits (B, 1, H / 2^n_layers − 2, W / 2^n_layers − 2)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(NORMS)}")
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            previous, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(channels * previous, channels * mult, 4, stride=2, padding=1, bias=use_bias),
                       _norm(norm, channels * mult), nn.LeakyReLU(0.2, True)]
        previous, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(channels * previous, channels * mult, 4, stride=1, padding=1, bias=use_bias),
                   _norm(norm, channels * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(channels * mult, 1, 4, stride=1, padding=1)]
        self.main = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def output_size(resolution: int, n_layers: int) -> int:
    """Side of the logit map for a square input (≤ 0: the input is too small for this discriminator)."""
    size = resolution
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """hinge: ½(E relu(1 − D(x)) + E relu(1 + D(x̂))); vanilla: ½(E softplus(−D(x)) + E softplus(D(x̂)))."""
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    if kind == "vanilla":
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    raise ValueError(f"unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """−E D(x̂), the generator's adversarial term for both losses (as taming-transformers)."""
    return -logits_fake.mean()
