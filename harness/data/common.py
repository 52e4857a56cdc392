"""Shared helpers of the datasets: seeding, train/val splits, pixel conversion, resizing."""

from __future__ import annotations

import operator
import re
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "val")


def seeded_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A Generator determined by the seed and the keys (strings are hashed stably)."""
    words = [seed % 2**64] + [zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys]
    return np.random.default_rng(words)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def check_index(index: int, length: int) -> int:
    index = operator.index(index)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return index


#: The seed every validation item (and every train/val partition) is drawn from, whatever the run's seed: seeds
#: vary the initialisation and the training batches, not the test set, so a paired comparison over seeds
#: measures the estimators on one validation set.
VALIDATION_SEED = 0


def item_seed(split: str, seed: int) -> int:
    """The seed a dataset draws the items of `split` from: the run's seed for training batches,
    VALIDATION_SEED for validation (one fixed validation set for every seed)."""
    return seed if split == "train" else VALIDATION_SEED


def split_indices(count: int, split: str, val_fraction: float, what: str) -> np.ndarray:
    """Sorted indices of `split` in a train/val partition of `count` items, the same for every run seed
    (drawn from VALIDATION_SEED)."""
    if count < 2:
        raise ValueError(f"found {count} {what}; at least 2 are needed to split into train and val")
    n_val = min(max(round(count * val_fraction), 1), count - 1)
    order = seeded_rng(VALIDATION_SEED, "split").permutation(count)
    return np.sort(order[:n_val] if split == "val" else order[n_val:])


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, C) with C in {1, 3, 4}, or greyscale (H, W), as (..., H, W, 3)."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    if pixels.shape[-1] == 4:
        return pixels[..., :3]
    return pixels


def to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1]."""
    values = torch.from_numpy(pixels.astype(np.float32)).movedim(-1, -3)
    return (values / 127.5 - 1.0).contiguous()


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) of an image resized so that its short side is `size` (neither side below it)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): short side resized to `size` (antialiased
    bilinear), then the center cropped; values stay in [-1, 1]."""
    height, width = images.shape[-2:]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        images = F.interpolate(
            images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[..., top : top + size, left : left + size].clamp(-1.0, 1.0).contiguous()


def natural_key(path: Path) -> list:
    """Sort key that orders frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class UnreadableFile(OSError, ValueError):
    """A data file that cannot be read or decoded (missing, truncated, corrupt); the message names it.

    An OSError (as the file system's errors) and a ValueError (as a malformed file's), so callers catching
    either still catch it; `data.skip_corrupt` skips exactly these. Built from one message alone, it is the
    error a DataLoader re-raises from a worker (whose message, with the worker's traceback, names the file).
    """

    def __init__(self, what: str, path=None, reason=None):
        super().__init__(what if path is None else f"cannot read {what} {path}: {reason}")
        self.what, self.path, self.reason = what, None if path is None else str(path), reason

    def __reduce__(self):  # picklable, so it crosses process boundaries whole
        return type(self), (self.what, self.path, None if self.reason is None else str(self.reason))
