"""Tests of ImageNet-scale loading (harness/data/loading.py, decode.py, index.py): batches with workers equal
batches without, reduced decoding stays close to full decoding, unreadable files are named or skipped and
counted, the cached file index is used while the tree is unchanged and rebuilt when it changes."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from helpers_harness import tiny_raw, write_yaml
from PIL import Image

from harness import data
from harness.config import DataConfig
from harness.cores import run_cores
from harness.data import index as file_index
from harness.data.common import UnreadableFile, resize_center_crop, to_unit
from harness.data.decode import decode_reduced, read_image_reduced, to_unit_from_uint8
from harness.data.loading import default_num_workers, make_loader, to_device
from harness.status import RunStatus
from harness.suite import load_suite
from harness.train import StepBatchSampler, train_run


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    """Every test caches file indexes in its own folder, whatever the tree's size."""
    monkeypatch.setenv(file_index.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(file_index, "CACHE_MIN_FILES", 0)
    return tmp_path / "cache"


def smooth_pixels(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 (height, width, 3): smooth random colours, photograph-like enough for JPEG."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def write_image(path, width: int, height: int, seed: int, **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_pixels(width, height, seed)).save(path, **save)


def image_folder(root, count: int = 12, size=(40, 30)):
    for i in range(count):
        write_image(root / f"class{i % 3}" / f"{i:02d}.jpg", *size, seed=i, quality=90)
    return root


def build(name: str, params: dict, split: str = "train", seed: int = 0):
    return data.build_dataset(DataConfig.from_section({"name": name, **params}), split, seed)


def truncate(path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def old_pipeline(path, size: int) -> torch.Tensor:
    """The pixels image_folder gave before reduced decoding: full decode, float32, then resize and crop."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return resize_center_crop(to_unit(pixels)[None], size)[0]


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("size", [256, 200, 64])
def test_reduced_decoding_matches_full_decoding(tmp_path, size):
    """500x375 JPEG (ImageNet's typical size): at 256 and 200 decoded at full scale, at 64 at 1/4 scale (draft);
    either way within a few levels of the full-resolution float32 pipeline."""
    path = tmp_path / "photo.jpg"
    write_image(path, 500, 375, seed=3, quality=92)
    reduced = to_unit_from_uint8(read_image_reduced(path, size))
    full = old_pipeline(path, size)
    assert reduced.shape == full.shape == (3, size, size) and reduced.dtype == torch.float32
    difference = (reduced - full).abs()
    assert difference.mean() < 2.5 / 127.5
    assert difference.max() < (6 if size == 64 else 3) / 127.5


def test_decoding_png_greyscale_and_rgba(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(smooth_pixels(60, 40, seed=1)[..., 0]).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([smooth_pixels(30, 50, seed=2), np.full((50, 30), 128, np.uint8)])).save(rgba)
    for path in (grey, rgba):  # the JPEG decoded at 1/2 scale (draft), the PNG in full
        pixels = read_image_reduced(path, 16)
        assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.uint8
        difference = (to_unit_from_uint8(pixels) - old_pipeline(path, 16)).abs()
        assert difference.mean() < 2.5 / 127.5 and difference.max() < 6 / 127.5


@pytest.mark.parametrize("save", [{"progressive": True}, {"exif": b"Exif\x00\x00" + bytes(6000)},
                                  {"icc_profile": bytes(70000)}], ids=["progressive", "exif", "icc"])
@pytest.mark.parametrize("size", [256, 64])
def test_decoding_jpegs_with_other_headers(tmp_path, save, size):
    """The frame header is found past large APP segments and in progressive JPEGs: decoded at full scale (256)
    or reduced (64), the pixels match the full-resolution float32 pipeline."""
    path = tmp_path / "photo.jpg"
    write_image(path, 500, 375, seed=4, quality=92, **save)
    difference = (to_unit_from_uint8(read_image_reduced(path, size)) - old_pipeline(path, size)).abs()
    assert difference.mean() < 2.5 / 127.5 and difference.max() < (6 if size == 64 else 3) / 127.5


@pytest.mark.parametrize("size", [256, 64, 16])
def test_decoded_pixels_are_channels_last_for_the_uint8_resize(tmp_path, size):
    """JPEG at full scale (256), reduced (64) and PNG: (1, 3, H, W) with the strides of a contiguous
    channels-last tensor, which torch's uint8 resize reads without copying (a batch stride of 3 makes it copy)."""
    for path in (tmp_path / "photo.jpg", tmp_path / "photo.png"):
        write_image(path, 500, 375, seed=5)
        pixels = decode_reduced(path, size)
        expected = torch.empty(pixels.shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        assert pixels.shape[:2] == (1, 3) and min(pixels.shape[-2:]) >= size
        assert pixels.stride() == expected.stride()


# ----------------------------------------------------------------------------- workers


def test_workers_give_the_same_batches_as_the_training_process(tmp_path):
    dataset = build("image_folder", {"root": str(image_folder(tmp_path / "images")), "size": 16})
    batches = {}
    for workers in (0, 2):
        sampler = StepBatchSampler(len(dataset), 4, seed=0, start=0, stop=6)
        loader = make_loader(dataset, workers, pin_memory=False, generator=torch.Generator().manual_seed(0),
                             batch_sampler=sampler)
        batches[workers] = [batch for batch, skipped in loader]
    assert len(batches[0]) == 6 and batches[0][0].shape == (4, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2], strict=True))


def test_default_workers_follow_the_cores_given_to_the_run(tmp_path, monkeypatch):
    images = build("image_folder", {"root": str(image_folder(tmp_path / "images")), "size": 16})
    patches = build("natural_patches", {"size": 16, "train_patches": 8, "val_patches": 4})
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    assert run_cores() == 5
    assert default_num_workers(images) == 4 and default_num_workers(patches) == 0
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert run_cores() == len(os.sched_getaffinity(0))
    assert default_num_workers(images) == len(os.sched_getaffinity(0)) - 1


def test_a_run_with_workers_ends_with_the_same_metrics(tmp_path):
    results = {}
    for workers in (0, 2):
        raw = tiny_raw(f"workers{workers}", base={"training": {"num_workers": workers, "eval_every": 2}})
        spec = load_suite(write_yaml(tmp_path / f"workers{workers}.yaml", raw)).runs[0]
        result = train_run(spec.config, tmp_path / f"run{workers}", progress=False)
        assert result.status == RunStatus.FINISHED
        results[workers] = {k: v for k, v in result.metrics.items() if k != "wall_time_s"}
    assert results[0] == results[2]


def test_num_workers_default_stays_out_of_the_resolved_run(tmp_path):
    spec = load_suite(write_yaml(tmp_path / "tiny.yaml", tiny_raw())).runs[0]
    assert "num_workers" not in spec.config.resolved["training"]
    assert spec.config.training.num_workers is None


# ----------------------------------------------------------------------------- unreadable files


def test_a_corrupt_jpeg_is_named_in_the_training_process_and_in_a_worker(tmp_path):
    root = image_folder(tmp_path / "images", count=4)
    bad = root / "class0" / "00.jpg"
    truncate(bad)
    dataset = build("image_folder", {"root": str(root), "size": 16, "val_fraction": 0.25})
    index = dataset.files.index(bad)
    with pytest.raises(UnreadableFile, match="00.jpg") as error:
        dataset[index]
    assert isinstance(error.value, OSError) and error.value.path == str(bad)
    loader = make_loader(dataset, 2, pin_memory=False, batch_size=len(dataset))
    with pytest.raises(UnreadableFile, match=str(bad)):
        next(iter(loader))


def test_skip_corrupt_takes_the_next_readable_file_and_says_which_it_skipped(tmp_path):
    root = image_folder(tmp_path / "images", count=6)
    (root / "class1" / "garbage.jpg").write_bytes(b"not a jpeg at all")
    truncate(root / "class2" / "02.jpg")
    params = {"root": str(root), "size": 16, "skip_corrupt": True}
    dataset = build("image_folder", dict(params, val_fraction=0.1))
    bad = sorted(str(f) for f in dataset.files if f.name in ("garbage.jpg", "02.jpg"))
    assert len(bad) == 2
    for path in bad:
        index = [str(f) for f in dataset.files].index(path)
        item, skipped = dataset.load(index)
        readable = next(i % len(dataset) for i in range(index, index + len(dataset))
                        if str(dataset.files[i % len(dataset)]) not in bad)
        assert torch.equal(item, dataset[readable]) and torch.equal(dataset[index], item)
        assert set(skipped) <= set(bad) and path in skipped
    loader = make_loader(dataset, 2, pin_memory=False, batch_size=len(dataset))
    batch, skipped = next(iter(loader))
    assert batch.shape == (len(dataset), 3, 16, 16) and set(skipped) == set(bad)


def test_the_record_counts_the_skipped_files(tmp_path):
    root = tmp_path / "images"
    for split, count in (("train", 16), ("val", 8)):
        image_folder(root / split, count=count, size=(24, 20))
    bad = [root / "val" / "class0" / "00.jpg", root / "val" / "class1" / "04.jpg"]
    for path in bad:
        truncate(path)
    specs = {}
    for skip in (True, False):
        raw = tiny_raw(f"skip{skip}", base={"training": {"eval_batches": None, "num_workers": 2}})
        raw["base"]["data"] = {"name": "image_folder", "root": str(root), "size": 16, "skip_corrupt": skip}
        specs[skip] = load_suite(write_yaml(tmp_path / f"skip{skip}.yaml", raw)).runs[0]
    result = train_run(specs[True].config, tmp_path / "run", progress=False)
    assert result.status == RunStatus.FINISHED
    assert result.notes["skipped_corrupt"] == {"count": 2, "files": sorted(str(p) for p in bad)}
    with pytest.raises(UnreadableFile, match="00.jpg|04.jpg"):
        train_run(specs[False].config, tmp_path / "run_fail", progress=False)


# ----------------------------------------------------------------------------- the file index


def age(root, seconds: float = 100.0) -> None:
    """Set every folder's modification time `seconds` in the past (as a tree untouched for a while)."""
    past = time.time() - seconds
    for folder, _, _ in os.walk(root):
        os.utime(folder, (past, past))


def forbid_walks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the tree was walked although its cached index is valid")

    monkeypatch.setattr(file_index.os, "walk", refuse)


def test_the_index_sorts_as_pathlib_and_skips_hidden_files(tmp_path):
    root = tmp_path / "tree"
    for relative in ("a/x.jpg", "a/b/y.JPG", "a-b/z.png", "a/.hidden.jpg", ".cache/w.jpg", "a/notes.txt"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    files = file_index.indexed_files(root, frozenset({".jpg", ".png"}))
    assert files == sorted(root / r for r in ("a/x.jpg", "a/b/y.JPG", "a-b/z.png"))


def test_the_cached_index_is_used_until_a_file_is_added(tmp_path, monkeypatch, index_cache):
    root = image_folder(tmp_path / "images", count=6)
    age(root)
    suffixes = frozenset({".jpg"})
    built = file_index.indexed_files(root, suffixes)
    assert len(built) == 6 and list(index_cache.iterdir())
    with monkeypatch.context() as patch:
        forbid_walks(patch)
        assert file_index.indexed_files(root, suffixes) == built  # from the cache alone
    write_image(root / "class1" / "new.jpg", 40, 30, seed=99)
    grown = file_index.indexed_files(root, suffixes)
    assert grown == sorted(built + [root / "class1" / "new.jpg"])
    (root / "class0" / "00.jpg").unlink()
    assert root / "class0" / "00.jpg" not in file_index.indexed_files(root, suffixes)


def test_a_recently_modified_tree_is_not_trusted_from_the_cache(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images", count=3)  # folders modified just now: within RACY_SECONDS
    suffixes = frozenset({".jpg"})
    file_index.indexed_files(root, suffixes)
    walks = []
    original = os.walk
    monkeypatch.setattr(file_index.os, "walk", lambda *a, **k: walks.append(a) or original(*a, **k))
    file_index.indexed_files(root, suffixes)
    assert walks  # walked again: a change in the same timestamp tick could have been missed


def test_an_unreadable_cache_is_rebuilt(tmp_path, caplog):
    root = image_folder(tmp_path / "images", count=3)
    age(root)
    suffixes = frozenset({".jpg"})
    expected = file_index.indexed_files(root, suffixes)
    file_index.index_path(root, suffixes).write_bytes(b"garbage")
    assert file_index.indexed_files(root, suffixes) == expected
    assert "unreadable" in caplog.text


def test_datasets_read_their_files_from_the_index(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images", count=6)
    (tmp_path / "clips").mkdir()
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / "clips" / name, np.zeros((4, 8, 8, 3), np.uint8))
    age(tmp_path)
    params = {"root": str(root), "size": 16}
    video_params = {"root": str(tmp_path / "clips"), "frames": 2, "size": 8, "val_fraction": 0.5}
    expected = (build("image_folder", params).files, [v.path for v in build("video_folder", video_params).videos])
    forbid_walks(monkeypatch)
    assert build("image_folder", params).files == expected[0]
    assert [v.path for v in build("video_folder", video_params).videos] == expected[1]


def test_to_device_gives_channels_last_image_batches_and_leaves_video_alone():
    images = torch.randn(2, 3, 8, 8)
    batch = to_device(images, torch.device("cpu"), torch.channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    assert torch.equal(batch, images)
    clips = torch.randn(2, 3, 2, 8, 8)
    assert to_device(clips, torch.device("cpu"), torch.channels_last).is_contiguous()
