"""Folders on disk: image_folder (ImageNet / FFHQ layouts) and video_folder (.npy/.npz clips or frame folders:
BAIR, UCF-101 as frames)."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..schema import setting
from .common import (
    SPLITS,
    as_rgb,
    check_index,
    natural_key,
    read_image,
    resize_center_crop,
    seeded_rng,
    split_indices,
    to_unit,
)


@dataclass(frozen=True)
class ImageFolderParams:
    """image_folder: root (str, required); size (int, 256) output side (short side resized,
    then center crop); extensions (list of str, .jpg .jpeg .png); val_fraction (float, 0.1)
    used only when root has no train/val subfolders."""

    root: str = setting()
    size: int = setting(256, at_least=1)
    extensions: tuple[str, ...] = setting((".jpg", ".jpeg", ".png"))
    val_fraction: float = setting(0.1, above=0, below=1)


@dataclass(frozen=True)
class VideoFolderParams:
    """video_folder: root (str, required); frames (int, 16) per clip; size (int, 64) output
    side; stride (int, 1) step between the frames of a clip; val_fraction (float, 0.1) used
    only when root has no train/val subfolders."""

    root: str = setting()
    frames: int = setting(16, at_least=1)
    size: int = setting(64, at_least=1)
    stride: int = setting(1, at_least=1)
    val_fraction: float = setting(0.1, above=0, below=1)


def _split_items(
    root: str,
    split: str,
    seed: int,
    val_fraction: float,
    find: Callable[[Path], list],
    what: str,
    layout: str,
) -> list:
    """The items `find` returns for `split` under root/<split>, or, when root has neither a
    train nor a val subfolder, a seeded `val_fraction` partition of those under root."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"dataset root {root_path} does not exist; expected {layout}")
    presplit = any((root_path / s).is_dir() for s in SPLITS)
    base = root_path / split if presplit else root_path
    items = find(base) if base.is_dir() else []
    if not items:
        raise FileNotFoundError(f"no {what} found under {base}; expected {layout}")
    if presplit:
        return items
    return [items[i] for i in split_indices(len(items), split, seed, val_fraction, what)]


def image_suffixes(extensions: tuple[str, ...]) -> set[str]:
    """File-name suffixes, lower case with their dot, from extensions written ".png" or "png"."""
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}


def _files_under(base: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Non-hidden files under `base` (recursively) with one of `extensions`, sorted."""
    suffixes = image_suffixes(extensions)
    return sorted(
        p
        for p in base.rglob("*")
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


class ImageFolder(Dataset):
    """Images from root/<split>/<class>/*.jpg|png, or from root/<class>/* split by seed."""

    Params: ClassVar[type] = ImageFolderParams
    kind: ClassVar[str] = "image"

    def __init__(self, params: ImageFolderParams, split: str, seed: int):
        self.params = params
        pattern = "|".join(e.lstrip(".") for e in params.extensions)
        layout = (
            f"root/train/<class>/*.{pattern} and root/val/<class>/*.{pattern}, or "
            f"root/<class>/*.{pattern} (split by seed with val_fraction)"
        )
        self.files = _split_items(
            params.root, split, seed, params.val_fraction,
            lambda base: _files_under(base, params.extensions), "images", layout,
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = read_image(self.files[check_index(index, len(self))])
        return resize_center_crop(to_unit(image)[None], self.params.size)[0]


FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
ARRAY_EXTENSIONS = (".npy", ".npz")
VIDEO_LAYOUT = (
    "root/train/<clip> and root/val/<clip>, or root/<clip> (split by seed with val_fraction), "
    "where a clip is a .npy/.npz array (T, H, W, C) uint8 or a folder of frames *.png|jpg"
)


class _ArrayVideo:
    """A clip stored as one .npy/.npz array (T, H, W, C) uint8; only its header is read here."""

    def __init__(self, path: Path):
        self.path = path
        try:
            shape, dtype = self._header()
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"cannot read video array {path}: {error}; expected a .npy, or a .npz holding one "
                "array, of shape (T, H, W, C) uint8"
            ) from error
        if len(shape) != 4 or shape[-1] not in (1, 3) or dtype != np.uint8:
            raise ValueError(
                f"video array {path} has shape {shape} and dtype {dtype}; "
                "expected (T, H, W, C) uint8 with C = 1 or 3"
            )
        self.length = shape[0]

    def _header(self) -> tuple[tuple[int, ...], np.dtype]:
        if self.path.suffix.lower() == ".npy":
            array = np.load(self.path, mmap_mode="r")
            return array.shape, array.dtype
        with zipfile.ZipFile(self.path) as archive:
            members = archive.namelist()
            if len(members) != 1:
                raise ValueError(f"it holds {len(members)} arrays")
            with archive.open(members[0]) as stream:
                fmt = np.lib.format
                version = fmt.read_magic(stream)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read(stream)
        return shape, dtype

    def read(self, frames: np.ndarray) -> np.ndarray:
        """The given frames as uint8 (t, H, W, 3)."""
        if self.path.suffix.lower() == ".npy":
            return as_rgb(np.load(self.path, mmap_mode="r")[frames])
        with np.load(self.path) as archive:
            return as_rgb(archive[archive.files[0]][frames])


class _FrameFolder:
    """A clip stored as a folder of frame images, in natural name order."""

    def __init__(self, path: Path, frames: list[Path]):
        self.path = path
        self.frames = sorted(frames, key=natural_key)
        self.length = len(self.frames)

    def read(self, frames: np.ndarray) -> np.ndarray:
        """The given frames as uint8 (t, H, W, 3)."""
        return np.stack([read_image(self.frames[i]) for i in frames])


def _find_videos(base: Path) -> list[_ArrayVideo | _FrameFolder]:
    """Every clip array and every folder holding frame images under `base`, sorted by path."""
    videos: list[_ArrayVideo | _FrameFolder] = []
    for folder, subfolders, files in os.walk(base):
        subfolders.sort()
        visible = [Path(folder, f) for f in sorted(files) if not f.startswith(".")]
        frames = [p for p in visible if p.suffix.lower() in FRAME_EXTENSIONS]
        if frames:
            videos.append(_FrameFolder(Path(folder), frames))
        videos.extend(_ArrayVideo(p) for p in visible if p.suffix.lower() in ARRAY_EXTENSIONS)
    return sorted(videos, key=lambda v: v.path)


class VideoFolder(Dataset):
    """One clip per video: `frames` frames `stride` apart from a seeded start, each resized
    (short side) and center-cropped to size x size. Videos too short are skipped."""

    Params: ClassVar[type] = VideoFolderParams
    kind: ClassVar[str] = "video"

    def __init__(self, params: VideoFolderParams, split: str, seed: int):
        self.params, self.split, self.seed = params, split, seed
        videos = _split_items(
            params.root, split, seed, params.val_fraction, _find_videos, "videos", VIDEO_LAYOUT
        )
        self.span = (params.frames - 1) * params.stride + 1
        self.videos = [v for v in videos if v.length >= self.span]
        if len(self.videos) < len(videos):
            warnings.warn(
                f"video_folder: skipping {len(videos) - len(self.videos)} of {len(videos)} {split} "
                f"videos under {params.root} shorter than {self.span} frames"
            )
        if not self.videos:
            raise ValueError(
                f"video_folder: no {split} video under {params.root} has the {self.span} frames "
                f"that frames={params.frames}, stride={params.stride} need"
            )

    def __len__(self) -> int:
        return len(self.videos)

    def start(self, index: int) -> int:
        """The first frame of clip `index` in its video."""
        index = check_index(index, len(self))
        rng = seeded_rng(self.seed, "video_folder", SPLITS.index(self.split), index)
        return int(rng.integers(self.videos[index].length - self.span + 1))

    def __getitem__(self, index: int) -> torch.Tensor:
        frames = self.start(index) + self.params.stride * np.arange(self.params.frames)
        clip = to_unit(self.videos[index].read(frames))
        return resize_center_crop(clip, self.params.size).transpose(0, 1).contiguous()
