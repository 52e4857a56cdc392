"""scikit-learn's 8x8 digits, upsampled to RGB images."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..schema import setting
from .common import check_index, resize_center_crop, split_indices


@dataclass(frozen=True)
class DigitsParams:
    """digits: size (int, 32) output side; val_fraction (float, 0.2) of the 1797 digits in val."""

    size: int = setting(32, at_least=1)
    val_fraction: float = setting(0.2, above=0, below=1)


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    """scikit-learn's digits, float32 (1797, 8, 8) with values 0..16."""
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32)


class Digits(Dataset):
    """scikit-learn's 8x8 greyscale digits, bilinearly upsampled to size x size, 3 channels."""

    Params: ClassVar[type] = DigitsParams
    kind: ClassVar[str] = "image"

    def __init__(self, params: DigitsParams, split: str, seed: int):
        self.params = params
        self.indices = split_indices(len(_digit_images()), split, params.val_fraction, "digits")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        digit = _digit_images()[self.indices[check_index(index, len(self))]]
        values = torch.from_numpy(digit / 8.0 - 1.0)[None, None]
        return resize_center_crop(values, self.params.size)[0].expand(3, -1, -1).contiguous()
