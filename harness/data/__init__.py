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

ImageNet-scale folders (paper §4.2): image_folder and video_folder list their files from a cached index
(index.py), decode JPEGs reduced and resize in uint8 (decode.py), and name an unreadable file in an
UnreadableFile error, or skip and report it with ``skip_corrupt``. loading.py stacks batches on the CPU (in
DataLoader workers) for the training loop to move to the device.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from ..schema import unknown_name
from .cifar import CIFAR_FILES, CIFAR_FOLDER, Cifar10
from .common import SPLITS, UnreadableFile, check_split
from .digits import Digits
from .folders import (
    ARRAY_EXTENSIONS,
    FRAME_EXTENSIONS,
    VIDEO_LAYOUT,
    ImageFolder,
    VideoFolder,
    image_suffixes,
)
from .photos import (
    MIN_PHOTOS,
    NaturalPatches,
    PanningPhotos,
    natural_photos,
    photo_split,
)

__all__ = [
    "CIFAR_FILES",
    "DATASETS",
    "MIN_PHOTOS",
    "SPLITS",
    "UnreadableFile",
    "Cifar10",
    "Digits",
    "ImageFolder",
    "NaturalPatches",
    "PanningPhotos",
    "VideoFolder",
    "build_dataset",
    "dataset_kind",
    "dataset_names",
    "natural_photos",
    "photo_split",
    "root_problem",
]


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
        suffixes = image_suffixes(data.params.extensions)
        found = _holds_a_file(path, lambda f: Path(f).suffix.lower() in suffixes)
        layout = f"image files ({', '.join(sorted(suffixes))}) in root/<class>/ or root/{{train,val}}/<class>/"
    return None if found else f"dataset root {path} holds no file {data.name} reads; expected {layout}"


def dataset_kind(name: str) -> str:
    """What dataset `name` yields: "image" (3, H, W) or "video" (3, T, H, W)."""
    return _dataset_class(name).kind


def build_dataset(data, split: str, seed: int) -> Dataset:
    """The dataset of `data` (a validated harness.config.DataConfig: name and Params instance) for `split`
    ("train" or "val") and `seed`. Raises ValueError for an unknown split."""
    dataset_class = _dataset_class(data.name)
    check_split(split)
    return dataset_class(data.params, split, operator.index(seed))
