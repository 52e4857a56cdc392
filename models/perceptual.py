"""An LPIPS-style perceptual loss (Zhang et al. 2018), the perceptual term of the VQGAN families
(taming-transformers' VQLPIPSWithDiscriminator; paper Tables 9-10).

d(x, y) = Σ_l mean_{h,w} w_l · (φ̂_l(x) − φ̂_l(y))², where φ_l are torchvision VGG16 activations at relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3 of the inputs (in [-1, 1], shifted and scaled as LPIPS does), φ̂_l is φ_l
normalised to unit length over channels, and w_l ≥ 0 are the learned 1×1 linear heads.

Weights are never downloaded. They come from ONE local state-dict file (`torch.save` of a dict) with keys
  vgg.<n>.weight / vgg.<n>.bias   n ∈ {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}: torchvision's
                                  vgg16 `features.<n>.*` (ImageNet weights, IMAGENET1K_V1);
  heads.<l>.weight                l ∈ {0..4}, shape (1, C_l, 1, 1), non-negative: the official LPIPS
                                  v0.1 'vgg.pth' `lin<l>.model.1.weight`.
The path is the model param `perceptual_weights` or the environment variable ROTATION_HARNESS_LPIPS_WEIGHTS.
Make the file from the two official files with

    python -m models.perceptual LPIPS_VGG_PTH TORCHVISION_VGG16_PTH OUT.pth

where LPIPS_VGG_PTH is lpips/weights/v0.1/vgg.pth of the `lpips` package (github.com/richzhang/
PerceptualSimilarity; taming-transformers' 'vgg.pth' holds the same heads) and TORCHVISION_VGG16_PTH is
torchvision's vgg16-397923af.pth (torchvision.models.VGG16_Weights.IMAGENET1K_V1).
"""
from __future__ import annotations

import argparse
import logging
import os

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "ROTATION_HARNESS_LPIPS_WEIGHTS"
#: Index (in torchvision's vgg16 `features`) of the ReLU after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3.
TAPS = (3, 8, 15, 22, 29)
CHANNELS = (64, 128, 256, 512, 512)
#: LPIPS's ScalingLayer constants (inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

HOW_TO_MAKE = (
    f"Give the path as the model param `perceptual_weights` or the environment variable {WEIGHTS_ENV}. "
    "The file is a torch.save'd state dict with keys 'vgg.<n>.weight'/'vgg.<n>.bias' (torchvision vgg16 "
    "`features.<n>` ImageNet weights, n < 30) and 'heads.<l>.weight' (l = 0..4, the official LPIPS v0.1 'vgg.pth' "
    "`lin<l>.model.1.weight`). Make it offline with: python -m models.perceptual LPIPS_VGG_PTH "
    "TORCHVISION_VGG16_PTH OUT.pth (lpips/weights/v0.1/vgg.pth from the `lpips` package, and torchvision's "
    "vgg16-397923af.pth). Or set perceptual_weight: 0."
)


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 convolutional trunk up to relu5_3 (indices 0-29), random init, nothing downloaded."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"], batch_norm=False)  # = vgg16(weights=None).features, no classifier
    except ImportError:  # torchvision without the helper: build the whole net once (slower, same layers)
        import torchvision

        features = torchvision.models.vgg16(weights=None).features
    layers = list(features.children())[: TAPS[-1] + 1]
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            layer.inplace = False  # the tapped activations must survive the next layer
    return nn.Sequential(*layers)


def resolve_weights_path(path: str | None) -> str:
    """The weights file to use: `path`, else $ROTATION_HARNESS_LPIPS_WEIGHTS; a clear error if neither exists."""
    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise FileNotFoundError("the perceptual (LPIPS) loss needs a local weights file and none was given. "
                                + HOW_TO_MAKE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LPIPS weights file {path!r} does not exist. " + HOW_TO_MAKE)
    return path


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG distance; `forward(x, y)` → per-sample distances (B,) for images (B, 3, H, W) in [-1, 1]."""

    def __init__(self, weights_path: str | None = None, load: bool = True):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.vgg = vgg16_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        if load:
            self.load_weights(resolve_weights_path(weights_path))
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, path: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same explanation
            raise ValueError(f"cannot read LPIPS weights file {path!r}: {error}. " + HOW_TO_MAKE) from error
        if not isinstance(state, dict):
            raise ValueError(f"LPIPS weights file {path!r} does not hold a state dict. " + HOW_TO_MAKE)
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"LPIPS weights file {path!r} has the wrong keys (missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]}). " + HOW_TO_MAKE)
        for index in range(len(self.heads)):
            if bool((state[f"heads.{index}.weight"] < 0).any()):
                raise ValueError(f"LPIPS weights file {path!r}: heads.{index}.weight has negative entries; "
                                 "LPIPS heads are non-negative")
        self.load_state_dict(state)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale
        distance = h.new_zeros(batch)
        tap = 0
        for index, layer in enumerate(self.vgg):
            h = layer(h)
            if index == TAPS[tap]:
                features = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                diff = (features[:batch] - features[batch:]).pow(2)
                distance = distance + self.heads[tap](diff).mean(dim=(1, 2, 3))
                tap += 1
        return distance


def convert_official(lpips_vgg_pth: str, torchvision_vgg16_pth: str, out_path: str) -> None:
    """Write the single state-dict file this module loads from the two official weight files."""
    heads = torch.load(lpips_vgg_pth, map_location="cpu", weights_only=True)
    vgg = torch.load(torchvision_vgg16_pth, map_location="cpu", weights_only=True)
    state = {}
    for key, value in vgg.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            if index <= TAPS[-1]:
                state["vgg." + key[len("features."):]] = value
    for index in range(len(CHANNELS)):
        for candidate in (f"lin{index}.model.1.weight", f"lin{index}.weight"):
            if candidate in heads:
                state[f"heads.{index}.weight"] = heads[candidate]
                break
        else:
            raise KeyError(f"{lpips_vgg_pth} has no lin{index}.model.1.weight (is it LPIPS v0.1 vgg.pth?)")
    reference = LPIPS(load=False).state_dict()
    for key, value in reference.items():
        if key not in state or state[key].shape != value.shape:
            raise ValueError(f"converted weights: {key} missing or of the wrong shape")
    torch.save(state, out_path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Make the LPIPS weights file of models/perceptual.py.")
    parser.add_argument("lpips_vgg_pth", help="the official LPIPS v0.1 vgg.pth (linear heads)")
    parser.add_argument("torchvision_vgg16_pth", help="torchvision's vgg16-397923af.pth (ImageNet VGG16)")
    parser.add_argument("out", help="where to write the combined state dict")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert_official(args.lpips_vgg_pth, args.torchvision_vgg16_pth, args.out)
    logger.info("wrote %s; use it as perceptual_weights or $%s", args.out, WEIGHTS_ENV)


if __name__ == "__main__":
    main()
