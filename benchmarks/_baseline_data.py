"""The loading and fidelity code as committed before the ImageNet-scale work (28b4487), kept only as the "before"
variant of benchmarks/bench_data.py, so BENCHMARKS.md shows before/after measured in the same run.

Copies of harness/data/common.py `read_image`, `to_unit` and `resize_center_crop`, harness/data/folders.py
`_files_under` and harness/fidelity.py `fidelity_for_run` (image path) with `image_fidelity`'s
torch-fidelity call, as they were.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3); an unreadable file raises OSError naming it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read image {path}: {error}") from error


def to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1]."""
    values = torch.from_numpy(pixels.astype(np.float32)).movedim(-1, -3)
    return (values / 127.5 - 1.0).contiguous()


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): short side resized (antialiased bilinear), then center cropped."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        images = F.interpolate(images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[..., top: top + size, left: left + size].clamp(-1.0, 1.0).contiguous()


def image_folder_item(path: Path, size: int) -> torch.Tensor:
    """image_folder's `__getitem__` before: full decode, float32, then resize and crop."""
    return resize_center_crop(to_unit(read_image(path))[None], size)[0]


def files_under(base: Path, suffixes: set[str]) -> list[Path]:
    """image_folder's file listing before: every start walked the tree (rglob, a stat per file, sort)."""
    return sorted(p for p in base.rglob("*")
                  if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file())


class _UInt8ImageDataset(torch.utils.data.Dataset):
    def __init__(self, images_uint8: torch.Tensor):
        self.images = images_uint8

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).cpu().contiguous()


def image_fidelity_for_run(model, val_set, limit: int, batch_size: int, weights_path: str) -> dict:
    """fidelity_for_run's image path before: every original and reconstruction kept as float32, concatenated,
    converted to uint8, then torch-fidelity's calculate_metrics on the tensors."""
    import torch_fidelity

    originals, reconstructions = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, limit, batch_size):
            x = torch.stack([val_set[i] for i in range(start, min(limit, start + batch_size))])
            x_hat, _ = model(x)
            originals.append(x.float().cpu())
            reconstructions.append(x_hat.float().clamp(-1, 1).cpu())
    originals_t, reconstructions_t = torch.cat(originals), torch.cat(reconstructions)
    metrics = torch_fidelity.calculate_metrics(
        input1=_UInt8ImageDataset(_to_uint8(reconstructions_t)), input2=_UInt8ImageDataset(_to_uint8(originals_t)),
        fid=True, isc=True, kid=False, prc=False, ppl=False, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights_path, isc_splits=min(10, len(reconstructions_t)), cuda=False,
        batch_size=64, cache=False, save_cpu_ram=True, datasets_download=False, samples_shuffle=True,
        rng_seed=2020, verbose=False)
    return {"r_fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
            "r_is": float(metrics[torch_fidelity.KEY_METRIC_ISC_MEAN])}
