"""Folders on disk: image_folder (ImageNet / FFHQ layouts) and video_folder (.npy/.npz clips or frame folders:
BAIR, UCF-101 as frames).

The files of a folder come from its cached index (index.py), images and frames are decoded reduced and resized
in uint8 (decode.py). An unreadable file raises UnreadableFile naming it; with `skip_corrupt` the item is
taken from the next readable file instead (`load` says which files were skipped, so the run can count them).
"""

from __future__ import annotations

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
from .common import (SPLITS, UnreadableFile, as_rgb, check_index, item_seed, natural_key, seeded_rng,
                     split_indices)
from .decode import read_image_reduced, resize_center_crop_uint8, to_unit_from_uint8
from .index import indexed_files


@dataclass(frozen=True)
class ImageFolderParams:
    """image_folder: root (str, required); size (int, 256) output side (short side resized,
    then center crop); extensions (list of str, .jpg .jpeg .png); val_fraction (float, 0.1)
    used only when root has no train/val subfolders; skip_corrupt (bool, false) replaces an unreadable
    image by the next readable one (and the run's record counts them) instead of failing."""

    root: str = setting()
    size: int = setting(256, at_least=1)
    extensions: tuple[str, ...] = setting((".jpg", ".jpeg", ".png"))
    val_fraction: float = setting(0.1, above=0, below=1)
    skip_corrupt: bool = setting(False)


@dataclass(frozen=True)
class VideoFolderParams:
    """video_folder: root (str, required); frames (int, 16) per clip; size (int, 64) output
    side; stride (int, 1) step between the frames of a clip; val_fraction (float, 0.1) used
    only when root has no train/val subfolders; skip_corrupt (bool, false) leaves out clip arrays whose
    header cannot be read and replaces a clip with an unreadable frame by the next readable clip (the run's
    record counts them) instead of failing."""

    root: str = setting()
    frames: int = setting(16, at_least=1)
    size: int = setting(64, at_least=1)
    stride: int = setting(1, at_least=1)
    val_fraction: float = setting(0.1, above=0, below=1)
    skip_corrupt: bool = setting(False)


def _split_items(
    root: str,
    split: str,
    val_fraction: float,
    find: Callable[[Path], list],
    what: str,
    layout: str,
) -> list:
    """The items `find` returns for `split` under root/<split>, or, when root has neither a
    train nor a val subfolder, a `val_fraction` partition of those under root, the same for every run seed."""
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
    return [items[i] for i in split_indices(len(items), split, val_fraction, what)]


def image_suffixes(extensions: tuple[str, ...]) -> set[str]:
    """File-name suffixes, lower case with their dot, from extensions written ".png" or "png"."""
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}


class _SkipsCorrupt:
    """`load(index)` for a dataset whose `read(index)` may raise UnreadableFile: the item, or with
    `params.skip_corrupt` the item of the next readable index (wrapping around), with the skipped paths.
    `skipped_files`: the unreadable files left out when the dataset was built."""

    skipped_files: tuple[str, ...] = ()

    def read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def load(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        index = check_index(index, len(self))
        skipped: list[str] = []
        for attempt in range(len(self)):
            try:
                return self.read((index + attempt) % len(self)), tuple(skipped)
            except UnreadableFile as error:
                if not self.params.skip_corrupt:
                    raise
                skipped.append(error.path)
        raise UnreadableFile("any item of", type(self).__name__, f"all {len(self)} files are unreadable")

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load(index)[0]


class ImageFolder(_SkipsCorrupt, Dataset):
    """Images from root/<split>/<class>/*.jpg|png, or from root/<class>/* split by val_fraction (the same
    split for every seed)."""

    Params: ClassVar[type] = ImageFolderParams
    kind: ClassVar[str] = "image"
    decodes_files: ClassVar[bool] = True

    def __init__(self, params: ImageFolderParams, split: str, seed: int):
        self.params = params
        pattern = "|".join(e.lstrip(".") for e in params.extensions)
        layout = (
            f"root/train/<class>/*.{pattern} and root/val/<class>/*.{pattern}, or "
            f"root/<class>/*.{pattern} (split by val_fraction, the same for every seed)"
        )
        suffixes = frozenset(image_suffixes(params.extensions))
        self.files = _split_items(
            params.root, split, params.val_fraction,
            lambda base: indexed_files(base, suffixes), "images", layout,
        )

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        return to_unit_from_uint8(read_image_reduced(self.files[index], self.params.size))


FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
ARRAY_EXTENSIONS = (".npy", ".npz")
VIDEO_LAYOUT = (
    "root/train/<clip> and root/val/<clip>, or root/<clip> (split by val_fraction, the same for every seed), "
    "where a clip is a .npy/.npz array (T, H, W, C) uint8 or a folder of frames *.png|jpg"
)


class _ArrayVideo:
    """A clip stored as one .npy/.npz array (T, H, W, C) uint8; only its header is read here."""

    def __init__(self, path: Path):
        self.path = path
        try:
            shape, dtype = self._header()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UnreadableFile(
                "video array", path, f"{error}; expected a .npy, or a .npz holding one array, of shape "
                "(T, H, W, C) uint8"
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

    def _pixels(self, frames: np.ndarray) -> np.ndarray:
        if self.path.suffix.lower() == ".npy":
            return np.load(self.path, mmap_mode="r")[frames]
        with np.load(self.path) as archive:
            return archive[archive.files[0]][frames]

    def read(self, frames: np.ndarray, size: int) -> torch.Tensor:
        """The given frames as uint8 (t, 3, size, size), each resized like an image_folder image."""
        try:
            pixels = np.ascontiguousarray(as_rgb(self._pixels(frames)))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UnreadableFile("video array", self.path, error) from error
        return resize_center_crop_uint8(torch.from_numpy(pixels).permute(0, 3, 1, 2), size)


class _FrameFolder:
    """A clip stored as a folder of frame images, in natural name order."""

    def __init__(self, path: Path, frames: list[Path]):
        self.path = path
        self.frames = sorted(frames, key=natural_key)
        self.length = len(self.frames)

    def read(self, frames: np.ndarray, size: int) -> torch.Tensor:
        """The given frames as uint8 (t, 3, size, size), each decoded reduced (decode.py)."""
        return torch.stack([read_image_reduced(self.frames[i], size) for i in frames])


def _find_videos(base: Path, skip_corrupt: bool, skipped: list[str]) -> list[_ArrayVideo | _FrameFolder]:
    """Every clip array and every folder holding frame images under `base` (from its file index), sorted by
    path. With `skip_corrupt`, arrays whose header cannot be read are left out and added to `skipped`."""
    videos: list[_ArrayVideo | _FrameFolder] = []
    frame_folders: dict[Path, list[Path]] = {}
    for path in indexed_files(base, frozenset(FRAME_EXTENSIONS + ARRAY_EXTENSIONS)):
        if path.suffix.lower() in FRAME_EXTENSIONS:
            frame_folders.setdefault(path.parent, []).append(path)
            continue
        try:
            videos.append(_ArrayVideo(path))
        except UnreadableFile as error:
            if not skip_corrupt:
                raise
            skipped.append(error.path)
    videos.extend(_FrameFolder(folder, frames) for folder, frames in frame_folders.items())
    return sorted(videos, key=lambda v: v.path)


class VideoFolder(_SkipsCorrupt, Dataset):
    """One clip per video: `frames` frames `stride` apart from a seeded start, each resized
    (short side) and center-cropped to size x size. Videos too short are skipped."""

    Params: ClassVar[type] = VideoFolderParams
    kind: ClassVar[str] = "video"
    decodes_files: ClassVar[bool] = True

    def __init__(self, params: VideoFolderParams, split: str, seed: int):
        self.params, self.split, self.seed = params, split, item_seed(split, seed)
        unreadable: list[str] = []
        videos = _split_items(
            params.root, split, params.val_fraction,
            lambda base: _find_videos(base, params.skip_corrupt, unreadable), "videos", VIDEO_LAYOUT,
        )
        self.skipped_files = tuple(unreadable)
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

    def read(self, index: int) -> torch.Tensor:
        frames = self.start(index) + self.params.stride * np.arange(self.params.frames)
        clip = self.videos[index].read(frames, self.params.size)
        return to_unit_from_uint8(clip).transpose(0, 1).contiguous()
