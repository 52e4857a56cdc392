"""The colour photographs shipped inside scikit-image and scikit-learn, and the two datasets cut from them:
natural_patches (random crops) and panning_photos (a window sliding across a photograph). The same photographs
are held out for validation whatever the seed, and the validation items are the same for every seed: seeds vary
the initialisation and the training batches, not the test set, so a paired comparison across seeds measures
the estimators on one validation set. No validation pixel is seen in training."""

from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..schema import setting
from .common import SPLITS, as_rgb, check_index, check_split, item_seed, seeded_rng, to_unit


@dataclass(frozen=True)
class PhotoParams:
    """Which photographs the photo datasets use (shared by natural_patches and panning_photos).

    val_photos (int, 2): how many photographs are held out for validation: the first this-many of
        VALIDATION_ORDER that loaded, the same for every seed.
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
#: The order in which photographs are held out for validation (the first `val_photos` that loaded): two natural
#: scenes first, so the default validation set is astronaut and china.jpg for every seed.
VALIDATION_ORDER = ("astronaut", "china.jpg", "chelsea", "coffee", "flower.jpg", "rocket", "stereo_motorcycle",
                    "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")


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
    return as_rgb(np.asarray(image))


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


def photo_split(split: str, val_photos: int, max_side: int) -> dict[str, np.ndarray]:
    """The photographs of `split`: the first `val_photos` of VALIDATION_ORDER that loaded are held out for
    validation and the rest are for training. The split is the same for every seed and every `max_side`."""
    check_split(split)
    photos = natural_photos(max_side)
    names = sorted(photos)
    if not 1 <= val_photos < len(names):
        raise ValueError(
            f"val_photos={val_photos} must be at least 1 and leave at least one of the "
            f"{len(names)} photographs for training"
        )
    held_out = [name for name in VALIDATION_ORDER if name in photos][:val_photos]
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
        photos = photo_split(split, params.val_photos, params.max_side)
        _photos_at_least(photos, params.size, "natural_patches")
        self.params, self.split, self.seed = params, split, item_seed(split, seed)
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
        index = check_index(index, len(self))
        rng = seeded_rng(self.seed, "natural_patches", SPLITS.index(self.split), index)
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
        return to_unit(patch[:, ::-1] if where.flip else patch)


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
        photos = photo_split(split, params.val_photos, params.max_side)
        _photos_at_least(photos, params.size, "panning_photos")
        self.params, self.split, self.seed = params, split, item_seed(split, seed)
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
        index = check_index(index, len(self))
        rng = seeded_rng(self.seed, "panning_photos", SPLITS.index(self.split), index)
        choice = int(rng.choice(len(self._photos), p=self._weights))
        height, width = self._photos[choice].shape[:2]
        return PanLocation(self.photo_names[choice], self._path(rng, height), self._path(rng, width))

    def __getitem__(self, index: int) -> torch.Tensor:
        where = self.locate(index)
        photo = self._photos[self.photo_names.index(where.photo)]
        size = self.params.size
        clip = np.stack([photo[t : t + size, l : l + size] for t, l in zip(where.tops, where.lefts)])
        return to_unit(clip).transpose(0, 1).contiguous()
