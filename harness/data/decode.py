"""Reduced decoding for the folder datasets (image_folder, video_folder): pixels stay uint8 until the output
size, so no full-resolution float32 image is ever made.

ImageNet-scale training (paper §4.2, Tables 1-4 read 1.28 M JPEGs) is bound by decoding. A JPEG whose short
side is at least twice the output side is decoded by libjpeg at the smallest of its scales (1/2, 1/4, 1/8:
PIL's draft mode) that keeps the short side at least `size`; other JPEGs are decoded by torchvision's
decode_jpeg (faster than PIL at full scale), other formats (PNG) by PIL. The uint8 pixels are then resized
(short side to `size`, antialiased bilinear, as `common.resize_center_crop` does on floats) and center-cropped
in uint8, channels-last (torch's vectorised uint8 path), and only the size x size crop becomes float32.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from .common import UnreadableFile, resized_shape

__all__ = ["read_image_reduced", "resize_center_crop_uint8", "to_unit_from_uint8"]

_JPEG_MAGIC = b"\xff\xd8"


def resize_center_crop_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, size, size): short side resized to `size` (antialiased bilinear, in
    uint8), then the center cropped; an image whose short side is `size` already keeps its exact pixels."""
    height, width = images.shape[-2:]
    new_h, new_w = resized_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        images = F.interpolate(images.contiguous(memory_format=torch.channels_last), size=(new_h, new_w),
                               mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[..., top: top + size, left: left + size]


def to_unit_from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> contiguous float32 in [-1, 1] (the datasets' convention, as `common.to_unit`)."""
    return images.to(torch.float32, memory_format=torch.contiguous_format).div_(127.5).sub_(1.0)


def _pil_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image as uint8 (1, 3, H, W), channels-last (a view of its RGB pixels)."""
    return torch.from_numpy(np.array(image if image.mode == "RGB" else image.convert("RGB"))).permute(2, 0, 1)[None]


def _decode_jpeg(path: Path) -> torch.Tensor:
    """A JPEG file at full scale as uint8 (1, 3, H, W) with torchvision (same pixels as PIL's libjpeg-turbo,
    about 30% faster). torchvision marks its image decoders deprecated in favour of TorchCodec; the
    DeprecationWarning is silenced here, where it would otherwise repeat for every image."""
    encoded = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(encoded, mode=ImageReadMode.RGB)[None]


def _decode(path: Path, size: int) -> torch.Tensor:
    """The pixels of the image file at `path` as uint8 (1, 3, H, W), a JPEG decoded reduced where its short
    side is at least 2 * `size` (see the module docstring)."""
    with Image.open(path) as image:
        width, height = image.size
        if image.format != "JPEG":
            return _pil_pixels(image)
        if min(width, height) >= 2 * size:
            new_h, new_w = resized_shape(height, width, size)
            image.draft("RGB", (new_w, new_h))  # keeps both sides at least these
            return _pil_pixels(image)
    return _decode_jpeg(path)


def read_image_reduced(path: Path, size: int) -> torch.Tensor:
    """The image file at `path` as uint8 (3, size, size): decoded reduced, resized and center-cropped (see the
    module docstring). An unreadable or corrupt file raises UnreadableFile naming it."""
    try:
        pixels = _decode(path, size)
    except (OSError, ValueError, RuntimeError, Image.DecompressionBombError) as error:
        raise UnreadableFile("image", path, error) from error
    return resize_center_crop_uint8(pixels, size)[0]
