"""(g) ImageNet-scale input and evaluation: image_folder items per second per worker, the file index of a tree of
100,000 files, and the peak host memory of r-FID as the validation set grows (each against the code before,
benchmarks/_baseline_data.py, in the same run).

* g-decode: `ImageFolder.__getitem__` on JPEGs of ImageNet's typical size (about 500x375, cut from the
  photographs shipped with scikit-image / scikit-learn) at output side 256 (the paper's ImageNet runs) and 128,
  in one process with one torch thread, as a DataLoader worker runs it.
* g-index: listing a tree of 100,000 small files (1,000 folders of 100): the walk of the code before (rglob, a
  stat per file, sort), building the index (walk and cache write) and loading the cached index.
* g-fidelity: peak resident memory of a run's r-FID / r-IS, streamed, on 1,000 and 4,000 images of 256x256,
  and of the code before on 250 and 1,000 (it keeps every image: 4,000 would need about 13 GB), each in a fresh
  process (benchmarks/_fidelity_memory.py says how, and why the Inception forward is a stand-in there).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import _baseline_data
from benchmarks._common import interleaved, timed2
from harness.data import decode
from harness.data import index as file_index
from harness.data.folders import ImageFolder, ImageFolderParams

JPEGS = 300
ITEMS_PER_ROUND = 30
PROFILE_ROUNDS = 7
TREE_FOLDERS, TREE_FILES_PER_FOLDER = 1000, 100
FIDELITY_RUNS = (("streamed", 1000), ("streamed", 4000), ("before", 250), ("before", 1000))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    """JPEGs of about 500x375 (ImageNet's typical size): random crops, at random scales, of the shipped
    colour photographs, quality 90, in 10 class folders."""
    from harness.data.photos import natural_photos

    photos = list(natural_photos(4096).values())
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("jpegs")
    for i in range(JPEGS):
        photo = Image.fromarray(np.asarray(photos[i % len(photos)]))
        width, height = (500, 375) if i % 3 else (375, 500)
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.3)
        photo = photo.resize((round(photo.width * scale) + 1, round(photo.height * scale) + 1),
                             Image.Resampling.BICUBIC)
        left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
        path = root / f"class{i % 10}" / f"{i:04d}.JPEG"
        path.parent.mkdir(exist_ok=True)
        photo.crop((left, top, left + width, top + height)).save(path, quality=90)
    return root


def _stage_profile(dataset: ImageFolder, size: int, device: torch.device) -> dict:
    """Where an item's time goes, now and before: process CPU seconds per item of each stage on the same
    ITEMS_PER_ROUND files, each stage timed on its own, the stages interleaved, min over PROFILE_ROUNDS rounds.
    "dataset indexing" is `dataset[i]` around its reader (the reader replaced by one returning a ready item)."""
    files = dataset.files[:ITEMS_PER_ROUND]
    pixels = [decode.decode_reduced(f, size) for f in files]
    crops = [decode.resize_center_crop_uint8(p, size)[0] for p in pixels]
    full = [_baseline_data.read_image(f) for f in files]
    floats = [_baseline_data.to_unit(p)[None] for p in full]
    indexing = copy.copy(dataset)
    indexing.read = lambda index: crops[index]

    stages = {
        "now": {"file read": lambda: [f.read_bytes() for f in files],
                "file read + decode": lambda: [decode.decode_reduced(f, size) for f in files],
                "uint8 resize + crop": lambda: [decode.resize_center_crop_uint8(p, size) for p in pixels],
                "float32 conversion (crop)": lambda: [decode.to_unit_from_uint8(c) for c in crops],
                "dataset indexing": lambda: [indexing[i] for i in range(ITEMS_PER_ROUND)],
                "item": lambda: [dataset[i] for i in range(ITEMS_PER_ROUND)]},
        "before": {"file read + decode (PIL)": lambda: [_baseline_data.read_image(f) for f in files],
                   "float32 conversion (full size)": lambda: [_baseline_data.to_unit(p) for p in full],
                   "float resize + crop": lambda: [_baseline_data.resize_center_crop(x, size) for x in floats],
                   "item": lambda: [_baseline_data.image_folder_item(f, size) for f in files]}}
    best = {code: {name: float("inf") for name in per} for code, per in stages.items()}
    for _ in range(PROFILE_ROUNDS):
        for code, per in stages.items():
            for name, run in per.items():
                best[code][name] = min(best[code][name], timed2(run, device)[1] / len(files))
    return best


@pytest.mark.parametrize("size", [256, 128])
def test_image_folder_items_per_second(benchmark, request, device, jpeg_folder, size, monkeypatch, tmp_path):
    benchmark.group = f"g. image_folder items/s per worker, size {size}"
    load_at_start = os.getloadavg()[0]
    monkeypatch.setenv(file_index.CACHE_ENV, str(tmp_path / "cache"))
    dataset = ImageFolder(ImageFolderParams(root=str(jpeg_folder), size=size, extensions=(".JPEG",)), "train", 0)
    cursors = {"now": 0, "before": 0}

    def items(variant):
        """The next ITEMS_PER_ROUND items of `variant`: both variants read the same files in the same round."""
        start = cursors[variant]
        cursors[variant] = (start + ITEMS_PER_ROUND) % (len(dataset) - ITEMS_PER_ROUND)
        return range(start, start + ITEMS_PER_ROUND)

    def now():
        for i in items("now"):
            dataset[i]

    def before():
        for i in items("before"):
            _baseline_data.image_folder_item(dataset.files[i], size)

    sizes = [Image.open(f).size for f in dataset.files[:50]]
    difference = max(float((dataset[i] - _baseline_data.image_folder_item(dataset.files[i], size)).abs().mean())
                     for i in range(5))
    info = interleaved(benchmark, request, "image_folder", now, {"image_folder (before)": before}, device, cap=15)
    info.update(section="g-decode", size=size, items_per_round=ITEMS_PER_ROUND, files=len(dataset.files),
                mean_source_size=[float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))],
                mean_abs_difference_vs_before=difference, stages=_stage_profile(dataset, size, device))
    info["load_average"] = [load_at_start, os.getloadavg()[0]]


def _age(root: Path, seconds: float = 600.0) -> None:
    past = time.time() - seconds
    for folder, _, _ in os.walk(root):
        os.utime(folder, (past, past))


def test_file_index_of_100000_files(benchmark, request, device, tmp_path, monkeypatch):
    benchmark.group = f"g. file index, {TREE_FOLDERS * TREE_FILES_PER_FOLDER} files"
    load_at_start = os.getloadavg()[0]
    monkeypatch.setenv(file_index.CACHE_ENV, str(tmp_path / "cache"))
    root = tmp_path / "tree"
    for folder in range(TREE_FOLDERS):
        (root / f"n{folder:08d}").mkdir(parents=True)
        for name in range(TREE_FILES_PER_FOLDER):
            (root / f"n{folder:08d}" / f"n{folder:08d}_{name:05d}.JPEG").touch()
    _age(root)
    suffixes = frozenset({".jpeg"})
    cache = file_index.index_path(root, suffixes)

    def build():
        cache.unlink(missing_ok=True)
        return file_index.indexed_files(root, suffixes)

    def cached():
        assert cache.exists()
        return file_index.indexed_files(root, suffixes)

    def before():
        return _baseline_data.files_under(root, set(suffixes))

    assert build() == before() and cached() == before()
    info = interleaved(benchmark, request, "cached index", cached,
                       {"index build (walk + cache write)": build, "walk (before)": before}, device, cap=5)
    info.update(section="g-index", files=TREE_FOLDERS * TREE_FILES_PER_FOLDER, folders=TREE_FOLDERS,
                cache_bytes=cache.stat().st_size, load_average=[load_at_start, os.getloadavg()[0]])


def _fidelity_run(variant: str, n: int, weights: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "benchmarks._fidelity_memory", variant, str(n), str(weights)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fidelity_peak_host_memory(benchmark, tmp_path):
    from benchmarks._fidelity_memory import save_standin_weights

    benchmark.group = "g. r-FID peak host memory"
    load_at_start = os.getloadavg()[0]
    weights = tmp_path / "inception-standin.pth"
    save_standin_weights(str(weights))
    runs = [_fidelity_run(variant, n, weights) for variant, n in FIDELITY_RUNS[:-1]]
    runs.append(benchmark.pedantic(_fidelity_run, args=(*FIDELITY_RUNS[-1], weights), rounds=1, iterations=1))
    benchmark.extra_info.update(section="g-fidelity", runs=runs, image_bytes=3 * 256 * 256 * 4,
                                load_average=[load_at_start, os.getloadavg()[0]])
