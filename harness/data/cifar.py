"""CIFAR-10 from its python pickle batches (read without running pickled code)."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..schema import setting
from .common import check_index, to_unit


@dataclass(frozen=True)
class Cifar10Params:
    """cifar10: root (str, required), the folder cifar-10-batches-py or its parent."""

    root: str = setting()


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
        return to_unit(self.images[check_index(index, len(self))])
