"""Reduced decoding for the folder datasets (image_folder, video_folder): pixels stay uint8 until the output
size, so no full-resolution float32 image is ever made.

ImageNet-scale training (paper §4.2, Tables 1-4 read 1.28 M JPEGs) is bound by decoding. A file is read once.
A JPEG whose short side is at least twice the output side is decoded by libjpeg at the smallest of its scales
(1/2, 1/4, 1/8: PIL's draft mode) that keeps the short side at least `size`; other JPEGs are decoded by
torchvision's decode_jpeg (faster than PIL at full scale), other formats (PNG) by PIL. The uint8 pixels are then
resized (short side to `size`, antialiased bilinear, as `common.resize_center_crop` does on floats) and
center-cropped in uint8, channels-last with the strides torch's vectorised uint8 resize reads without a copy,
and only the size x size crop becomes float32.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from .common import UnreadableFile, resized_shape

__all__ = ["decode_reduced", "read_image_reduced", "resize_center_crop_uint8", "to_unit_from_uint8"]

_JPEG_START = b"\xff\xd8"
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame (not DHT, JPG, DAC)


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


def _channels_last(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (H, W, 3) -> a (1, 3, H, W) view, channels-last with a batch stride of 3 * H * W. torch's uint8
    resize copies an input whose batch stride is anything else (`chw[None]` gives 3), which costs about 40% of
    the resize of a 500x375 image (benchmarks/bench_data.py, g-decode); the pixels are the same either way."""
    return pixels[None].permute(0, 3, 1, 2)


def _pil_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image as uint8 (1, 3, H, W), channels-last (see `_channels_last`)."""
    return _channels_last(torch.from_numpy(np.array(image if image.mode == "RGB" else image.convert("RGB"))))


def _decode_jpeg(encoded: bytes) -> torch.Tensor:
    """A JPEG file's bytes at full scale as uint8 (1, 3, H, W) with torchvision (same pixels as PIL's
    libjpeg-turbo, about 30% faster), channels-last (see `_channels_last`). torchvision marks its image decoders
    deprecated in favour of TorchCodec; the DeprecationWarning is silenced here, where it would otherwise repeat
    for every image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        chw = decode_jpeg(torch.frombuffer(bytearray(encoded), dtype=torch.uint8), mode=ImageReadMode.RGB)
    return _channels_last(chw.permute(1, 2, 0))  # decode_jpeg's (3, H, W) is a view of (H, W, 3) pixels


def _jpeg_shape(encoded: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, or None where `encoded` does not start like a JPEG or its
    segments cannot be walked to a frame header (PIL then reads the file). A few microseconds, where PIL's
    parse of the header takes about 50."""
    if encoded[:2] != _JPEG_START:
        return None
    at = 2
    while at + 9 <= len(encoded) and encoded[at] == 0xFF:
        marker = encoded[at + 1]
        if marker in _FRAME_MARKERS:  # FF Cn, length, precision, height, width
            return int.from_bytes(encoded[at + 5: at + 7], "big"), int.from_bytes(encoded[at + 7: at + 9], "big")
        at += 1 if marker == 0xFF else 2 + int.from_bytes(encoded[at + 2: at + 4], "big")  # fill byte, segment
    return None


def decode_reduced(path: Path, size: int) -> torch.Tensor:
    """The pixels of the image file at `path` as uint8 (1, 3, H, W), a JPEG decoded reduced where its short
    side is at least 2 * `size` (see the module docstring)."""
    encoded = path.read_bytes()
    shape = _jpeg_shape(encoded)
    if shape is not None and min(shape) < 2 * size:
        return _decode_jpeg(encoded)
    with Image.open(io.BytesIO(encoded)) as image:
        width, height = image.size
        if image.format == "JPEG" and min(width, height) >= 2 * size:
            new_h, new_w = resized_shape(height, width, size)
            image.draft("RGB", (new_w, new_h))  # keeps both sides at least these
        return _pil_pixels(image)


def read_image_reduced(path: Path, size: int) -> torch.Tensor:
    """The image file at `path` as uint8 (3, size, size): decoded reduced, resized and center-cropped (see the
    module docstring). An unreadable or corrupt file raises UnreadableFile naming it."""
    try:
        pixels = decode_reduced(path, size)
    except (OSError, ValueError, RuntimeError, Image.DecompressionBombError) as error:
        raise UnreadableFile("image", path, error) from error
    return resize_center_crop_uint8(pixels, size)[0]
