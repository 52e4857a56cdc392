"""Datasets of the harness: natural photographs, digits, image and video folders, CIFAR-10.

Every dataset is a ``torch.utils.data.Dataset`` of float32 tensors in [-1, 1]: images are
``(3, H, W)``, video clips ``(3, T, H, W)``. An item is a pure function of
``(seed, split, index)``: whatever is random in it (crop position, flip, clip start,
velocity) is drawn from a numpy Generator seeded with those three, so runs are comparable
and a DataLoader worker can compute any item on its own.

Registry
--------
``DATASETS`` maps a name to its dataset class. Each class has a ``Params`` dataclass whose
fields are the parameters it accepts (name, type, default; a field without a default is
required), so the valid keys are introspectable with ``dataclasses.fields``, and a ``kind``,
"image" or "video" (``dataset_kind(name)``).

* ``build_dataset(data, split, seed)`` builds the dataset of a validated ``harness.config.DataConfig``;
  the params are checked (types, ranges, unknown keys) by harness.schema when a suite is loaded.

Datasets
--------
natural_patches  random crops of the colour photographs shipped with scikit-image/-learn
panning_photos   clips of a window sliding across those photographs at a random velocity
digits           scikit-learn's 8x8 digits, upsampled
image_folder     ImageNet / FFHQ style folder of images
cifar10          the CIFAR-10 python pickle batches
video_folder     .npy/.npz clip arrays or folders of frames (BAIR, UCF-101 as frames)

The two photo datasets hold photographs out for validation (chosen from ``seed``), so no
validation pixel is ever seen in training.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import operator
import os
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .schema import setting, unknown_name

__all__ = [
    "DATASETS",
    "SPLITS",
    "Cifar10",
    "Digits",
    "ImageFolder",
    "NaturalPatches",
    "PanningPhotos",
    "Synthetic",
    "VideoFolder",
    "build_dataset",
    "dataset_kind",
    "dataset_names",
    "natural_photos",
    "photo_split",
]

SPLITS = ("train", "val")


# --------------------------------------------------------------------------------------
# Parameter declarations
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoParams:
    """Which photographs the photo datasets use (shared by natural_patches and panning_photos).

    val_photos (int, 2): how many photographs are held out for validation (chosen from the seed).
    max_side (int, 256): each photograph is downscaled once so its short side is at most this.
    """

    val_photos: int = setting(2, at_least=1)
    max_side: int = setting(256, at_least=1)


@dataclass(frozen=True)
class NaturalPatchesParams(PhotoParams):
    """natural_patches: size (int, 32) crop side; train_patches (int, 8192) and val_patches
    (int, 1024) items per split; val_photos, max_side as in PhotoParams."""

    size: int = setting(32, at_least=1)
    train_patches: int = setting(8192, at_least=1)
    val_patches: int = setting(1024, at_least=1)


@dataclass(frozen=True)
class PanningPhotosParams(PhotoParams):
    """panning_photos: frames (int, 8) per clip; size (int, 32) window side; clips_train
    (int, 1024) and clips_val (int, 128) items per split; max_speed (float, 3.0) the largest
    speed in pixels per frame along each axis; val_photos, max_side as in PhotoParams."""

    frames: int = setting(8, at_least=1)
    size: int = setting(32, at_least=1)
    clips_train: int = setting(1024, at_least=1)
    clips_val: int = setting(128, at_least=1)
    max_speed: float = setting(3.0, at_least=0)


@dataclass(frozen=True)
class DigitsParams:
    """digits: size (int, 32) output side; val_fraction (float, 0.2) of the 1797 digits in val."""

    size: int = setting(32, at_least=1)
    val_fraction: float = setting(0.2, above=0, below=1)


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
class Cifar10Params:
    """cifar10: root (str, required), the folder cifar-10-batches-py or its parent."""

    root: str = setting()


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


# --------------------------------------------------------------------------------------
# Shared helpers: seeding, splitting, pixels
# --------------------------------------------------------------------------------------


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A Generator determined by the seed and the keys (strings are hashed stably)."""
    words = [seed % 2**64] + [zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys]
    return np.random.default_rng(words)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _check_index(index: int, length: int) -> int:
    index = operator.index(index)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return index


def _split_indices(count: int, split: str, seed: int, val_fraction: float, what: str) -> np.ndarray:
    """Sorted indices of `split` in a seeded train/val partition of `count` items."""
    if count < 2:
        raise ValueError(f"found {count} {what}; at least 2 are needed to split into train and val")
    n_val = min(max(round(count * val_fraction), 1), count - 1)
    order = _rng(seed, "split").permutation(count)
    return np.sort(order[:n_val] if split == "val" else order[n_val:])


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
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


def _to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1]."""
    values = torch.from_numpy(pixels.astype(np.float32)).movedim(-1, -3)
    return (values / 127.5 - 1.0).contiguous()


def _resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): short side resized to `size` (antialiased
    bilinear), then the center cropped; values stay in [-1, 1]."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        images = F.interpolate(
            images, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[..., top : top + size, left : left + size].clamp(-1.0, 1.0).contiguous()


def _read_image(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3); an unreadable file raises OSError naming it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read image {path}: {error}") from error


def _natural_key(path: Path) -> list:
    """Sort key that orders frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


# --------------------------------------------------------------------------------------
# Natural photographs (natural_patches, panning_photos)
# --------------------------------------------------------------------------------------

#: skimage.data functions returning colour photographs (stereo_motorcycle: a tuple, left first).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "stereo_motorcycle",
)
#: sklearn.datasets.load_sample_image file names.
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
MIN_PHOTOS = 4


def _sklearn_sample_image(name: str) -> np.ndarray:
    """One of sklearn's sample images, decoded from the installed package's file as load_sample_image does
    (same pixels) but without importing sklearn.datasets, which costs ~0.7 s in every new process."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed")
    with Image.open(Path(spec.submodule_search_locations[0], "datasets", "images", name)) as image:
        return np.asarray(image)


def _load_photo(name: str) -> np.ndarray:
    if name in SKLEARN_PHOTOS:
        image = _sklearn_sample_image(name)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    return _as_rgb(np.asarray(image))


@functools.lru_cache(maxsize=None)
def _original_photos() -> dict[str, np.ndarray]:
    """All photographs that load offline, at full resolution; at least MIN_PHOTOS of them."""
    photos, failures = {}, []
    for name in SKIMAGE_PHOTOS + SKLEARN_PHOTOS:
        try:
            photos[name] = _load_photo(name)
        except Exception as error:  # a missing optional file must not stop the others
            failures.append(name)
            warnings.warn(f"skipping photograph {name!r}: {type(error).__name__}: {error}")
    if len(photos) < MIN_PHOTOS:
        raise RuntimeError(
            f"only {len(photos)} photographs loaded ({', '.join(photos) or 'none'}); at least "
            f"{MIN_PHOTOS} are needed. Failed: {', '.join(failures)}"
        )
    return photos


@functools.lru_cache(maxsize=None)
def natural_photos(max_side: int) -> dict[str, np.ndarray]:
    """Read-only uint8 (H, W, 3) photographs by name, short side at most `max_side`.

    Loaded and downscaled (Lanczos) once per process and value of `max_side`.
    """
    photos = {}
    for name, image in _original_photos().items():
        height, width = image.shape[:2]
        scale = max_side / min(height, width)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        image = np.ascontiguousarray(image)
        image.setflags(write=False)
        photos[name] = image
    return photos


def photo_split(split: str, seed: int, val_photos: int, max_side: int) -> dict[str, np.ndarray]:
    """The photographs of `split`: `val_photos` of them, chosen from `seed`, are held out
    for validation and the rest are for training. The choice depends only on the seed and
    the names of the photographs that loaded, not on `max_side`."""
    _check_split(split)
    photos = natural_photos(max_side)
    names = sorted(photos)
    if not 1 <= val_photos < len(names):
        raise ValueError(
            f"val_photos={val_photos} must be at least 1 and leave at least one of the "
            f"{len(names)} photographs for training"
        )
    held_out = {names[i] for i in _rng(seed, "photo_split").permutation(len(names))[:val_photos]}
    return {name: photos[name] for name in names if (name in held_out) == (split == "val")}


def _photos_at_least(photos: dict[str, np.ndarray], side: int, dataset: str) -> None:
    small = [f"{n} {p.shape[0]}x{p.shape[1]}" for n, p in photos.items() if min(p.shape[:2]) < side]
    if small:
        raise ValueError(
            f"{dataset}: photographs smaller than the window side {side}: {', '.join(small)} "
            "(raise max_side or lower size)"
        )


class PatchLocation(NamedTuple):
    """Where a natural_patches item comes from."""

    photo: str
    top: int
    left: int
    flip: bool


class NaturalPatches(Dataset):
    """size x size crops of natural photographs, photo chosen proportionally to its number
    of crop positions; horizontal flips (p = 1/2) in train only."""

    Params: ClassVar[type] = NaturalPatchesParams
    kind: ClassVar[str] = "image"

    def __init__(self, params: NaturalPatchesParams, split: str, seed: int):
        photos = photo_split(split, seed, params.val_photos, params.max_side)
        _photos_at_least(photos, params.size, "natural_patches")
        self.params, self.split, self.seed = params, split, seed
        self.photo_names = tuple(photos)
        self._photos = tuple(photos.values())
        positions = np.array(
            [(p.shape[0] - params.size + 1) * (p.shape[1] - params.size + 1) for p in self._photos],
            dtype=np.float64,
        )
        self._weights = positions / positions.sum()
        self._length = params.train_patches if split == "train" else params.val_patches

    def __len__(self) -> int:
        return self._length

    def locate(self, index: int) -> PatchLocation:
        """The source photograph, crop corner and flip of item `index`."""
        index = _check_index(index, len(self))
        rng = _rng(self.seed, "natural_patches", SPLITS.index(self.split), index)
        choice = int(rng.choice(len(self._photos), p=self._weights))
        height, width = self._photos[choice].shape[:2]
        top = int(rng.integers(height - self.params.size + 1))
        left = int(rng.integers(width - self.params.size + 1))
        flip = self.split == "train" and bool(rng.random() < 0.5)
        return PatchLocation(self.photo_names[choice], top, left, flip)

    def __getitem__(self, index: int) -> torch.Tensor:
        where = self.locate(index)
        photo = self._photos[self.photo_names.index(where.photo)]
        size = self.params.size
        patch = photo[where.top : where.top + size, where.left : where.left + size]
        return _to_unit(patch[:, ::-1] if where.flip else patch)


class PanLocation(NamedTuple):
    """Where a panning_photos clip comes from: window corners per frame."""

    photo: str
    tops: tuple[int, ...]
    lefts: tuple[int, ...]


class PanningPhotos(Dataset):
    """Video clips of a size x size window sliding across a natural photograph.

    Each clip has a constant velocity drawn uniformly in [-max_speed, max_speed] pixels per
    frame along each axis (smaller where the photograph is too small for the full travel);
    window corners are rounded to whole pixels, so every frame is an exact crop. The photo
    is chosen proportionally to its area; validation clips come from the held-out photos.
    """

    Params: ClassVar[type] = PanningPhotosParams
    kind: ClassVar[str] = "video"

    def __init__(self, params: PanningPhotosParams, split: str, seed: int):
        photos = photo_split(split, seed, params.val_photos, params.max_side)
        _photos_at_least(photos, params.size, "panning_photos")
        self.params, self.split, self.seed = params, split, seed
        self.photo_names = tuple(photos)
        self._photos = tuple(photos.values())
        areas = np.array([p.shape[0] * p.shape[1] for p in self._photos], dtype=np.float64)
        self._weights = areas / areas.sum()
        self._length = params.clips_train if split == "train" else params.clips_val

    def __len__(self) -> int:
        return self._length

    def _path(self, rng: np.random.Generator, extent: int) -> tuple[int, ...]:
        """Window corners along one axis of length `extent`, one per frame."""
        steps = self.params.frames - 1
        room = extent - self.params.size
        top_speed = min(self.params.max_speed, room / steps) if steps else 0.0
        velocity = rng.uniform(-top_speed, top_speed)
        travel = abs(velocity) * steps
        start = rng.uniform(0.0, room - travel) + (travel if velocity < 0 else 0.0)
        corners = np.rint(start + velocity * np.arange(self.params.frames))
        return tuple(int(c) for c in np.clip(corners, 0, room))

    def locate(self, index: int) -> PanLocation:
        """The source photograph and the window corners of clip `index`."""
        index = _check_index(index, len(self))
        rng = _rng(self.seed, "panning_photos", SPLITS.index(self.split), index)
        choice = int(rng.choice(len(self._photos), p=self._weights))
        height, width = self._photos[choice].shape[:2]
        return PanLocation(self.photo_names[choice], self._path(rng, height), self._path(rng, width))

    def __getitem__(self, index: int) -> torch.Tensor:
        where = self.locate(index)
        photo = self._photos[self.photo_names.index(where.photo)]
        size = self.params.size
        clip = np.stack([photo[t : t + size, l : l + size] for t, l in zip(where.tops, where.lefts)])
        return _to_unit(clip).transpose(0, 1).contiguous()


# --------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------


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
        self.indices = _split_indices(
            len(_digit_images()), split, seed, params.val_fraction, "digits"
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        digit = _digit_images()[self.indices[_check_index(index, len(self))]]
        values = torch.from_numpy(digit / 8.0 - 1.0)[None, None]
        return _resize_center_crop(values, self.params.size)[0].expand(3, -1, -1).contiguous()


# --------------------------------------------------------------------------------------
# Folders on disk (image_folder, video_folder)
# --------------------------------------------------------------------------------------


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
    return [items[i] for i in _split_indices(len(items), split, seed, val_fraction, what)]


def _suffixes(extensions: tuple[str, ...]) -> set[str]:
    """File-name suffixes, lower case with their dot, from extensions written ".png" or "png"."""
    return {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}


def _files_under(base: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Non-hidden files under `base` (recursively) with one of `extensions`, sorted."""
    suffixes = _suffixes(extensions)
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
        image = _read_image(self.files[_check_index(index, len(self))])
        return _resize_center_crop(_to_unit(image)[None], self.params.size)[0]


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
            return _as_rgb(np.load(self.path, mmap_mode="r")[frames])
        with np.load(self.path) as archive:
            return _as_rgb(archive[archive.files[0]][frames])


class _FrameFolder:
    """A clip stored as a folder of frame images, in natural name order."""

    def __init__(self, path: Path, frames: list[Path]):
        self.path = path
        self.frames = sorted(frames, key=_natural_key)
        self.length = len(self.frames)

    def read(self, frames: np.ndarray) -> np.ndarray:
        """The given frames as uint8 (t, H, W, 3)."""
        return np.stack([_read_image(self.frames[i]) for i in frames])


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
        index = _check_index(index, len(self))
        rng = _rng(self.seed, "video_folder", SPLITS.index(self.split), index)
        return int(rng.integers(self.videos[index].length - self.span + 1))

    def __getitem__(self, index: int) -> torch.Tensor:
        frames = self.start(index) + self.params.stride * np.arange(self.params.frames)
        clip = _to_unit(self.videos[index].read(frames))
        return _resize_center_crop(clip, self.params.size).transpose(0, 1).contiguous()


# --------------------------------------------------------------------------------------
# cifar10
# --------------------------------------------------------------------------------------

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "val": ("test_batch",)}
_CIFAR_FORMAT = (
    "a pickled dict with b'data' a uint8 array (N, 3072) and b'labels' (CIFAR-10 python version)"
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only, so a data file cannot run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> np.ndarray:
    """One CIFAR-10 batch as uint8 (N, 32, 32, 3)."""
    with open(path, "rb") as stream:
        try:
            data = _ArrayUnpickler(stream, encoding="bytes").load()[b"data"]
        except Exception as error:  # any failure to decode means the file is malformed
            raise ValueError(
                f"malformed CIFAR-10 batch {path} ({type(error).__name__}: {error}); "
                f"expected {_CIFAR_FORMAT}"
            ) from error
    is_array = isinstance(data, np.ndarray)
    if not (is_array and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        found = f"{data.dtype} {data.shape}" if is_array else type(data).__name__
        raise ValueError(
            f"malformed CIFAR-10 batch {path}: b'data' is {found}; expected {_CIFAR_FORMAT}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@functools.lru_cache(maxsize=4)
def _cifar_images(folder: Path, split: str) -> np.ndarray:
    """All images of `split` in `folder`, loaded once per process."""
    missing = [name for name in CIFAR_FILES[split] if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} files missing in {folder}: {', '.join(missing)}; expected "
            f"{', '.join(CIFAR_FILES['train'] + CIFAR_FILES['val'])} (cifar-10-python.tar.gz extracted)"
        )
    images = np.concatenate([_read_cifar_batch(folder / name) for name in CIFAR_FILES[split]])
    images.setflags(write=False)
    return images


class Cifar10(Dataset):
    """CIFAR-10 32x32 images: data_batch_1..5 for train, test_batch for val."""

    Params: ClassVar[type] = Cifar10Params
    kind: ClassVar[str] = "image"

    def __init__(self, params: Cifar10Params, split: str, seed: int):
        root = Path(params.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"cifar10 root {root} does not exist; expected the folder {CIFAR_FOLDER} "
                "(data_batch_1..5, test_batch) or its parent"
            )
        folder = root / CIFAR_FOLDER if (root / CIFAR_FOLDER).is_dir() else root
        self.images = _cifar_images(folder.resolve(), split)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _to_unit(self.images[_check_index(index, len(self))])


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

#: Dataset name -> dataset class; ``cls.Params`` lists its parameters.
DATASETS: dict[str, type[Dataset]] = {
    "natural_patches": NaturalPatches,
    "panning_photos": PanningPhotos,
    "digits": Digits,
    "image_folder": ImageFolder,
    "cifar10": Cifar10,
    "video_folder": VideoFolder,
}


def dataset_names() -> list[str]:
    """All dataset names, sorted."""
    return sorted(DATASETS)


def _dataset_class(name: str) -> type[Dataset]:
    """The class registered as `name`; an unknown name raises ValueError with the closest."""
    if name not in DATASETS:
        raise ValueError(unknown_name("dataset", name, DATASETS))
    return DATASETS[name]


def _holds_a_file(root: Path, wanted: Callable[[str], bool]) -> bool:
    """Whether any non-hidden file under `root` (recursively) is `wanted`; stops at the first one."""
    for _, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        if any(wanted(f) for f in files if not f.startswith(".")):
            return True
    return False


def root_problem(data) -> str | None:
    """Why the folder of a folder dataset (image_folder, video_folder, cifar10) cannot be read: it does not
    exist or holds none of the files the dataset reads; None if it can (or the dataset has no root). Only
    directory entries are read, so a suite loader can check each distinct root once, before anything runs."""
    root = getattr(data.params, "root", None)
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        return f"dataset root {path} does not exist (or is not a folder); set data.root to the dataset's folder"
    if data.name == "cifar10":
        wanted = set(CIFAR_FILES["train"] + CIFAR_FILES["val"])
        found = _holds_a_file(path, wanted.__contains__)
        layout = f"{CIFAR_FOLDER} (data_batch_1..5, test_batch) or its parent"
    elif data.name == "video_folder":
        suffixes = FRAME_EXTENSIONS + ARRAY_EXTENSIONS
        found = _holds_a_file(path, lambda f: Path(f).suffix.lower() in suffixes)
        layout = VIDEO_LAYOUT
    else:
        suffixes = _suffixes(data.params.extensions)
        found = _holds_a_file(path, lambda f: Path(f).suffix.lower() in suffixes)
        layout = f"image files ({', '.join(sorted(suffixes))}) in root/<class>/ or root/{{train,val}}/<class>/"
    return None if found else f"dataset root {path} holds no file {data.name} reads; expected {layout}"


def dataset_kind(name: str) -> str:
    """What dataset `name` yields: "image" (3, H, W), "video" (3, T, H, W) or "points"."""
    return _dataset_class(name).kind


def build_dataset(data, split: str, seed: int) -> Dataset:
    """The dataset of `data` (a validated harness.config.DataConfig: name and Params instance) for `split`
    ("train" or "val") and `seed`. Raises ValueError for an unknown split."""
    dataset_class = _dataset_class(data.name)
    _check_split(split)
    return dataset_class(data.params, split, operator.index(seed))
