"""Tests of harness/data/: every dataset on small data, the registry and param validation."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data
from harness.config import ConfigError, DataConfig
from harness.data import DATASETS, dataset_names


def build_dataset(name: str, params: dict, split: str, seed: int):
    """Dataset `name` built as a suite run builds it: params validated into a DataConfig first."""
    return data.build_dataset(DataConfig.from_section({"name": name, **params}), split, seed)


def problems_of(section) -> list[str]:
    """The problem lines of a data section ([] if it is valid)."""
    try:
        DataConfig.from_section(section)
    except ConfigError as error:
        return error.problems
    return []


def as_unit(pixels):
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1], the datasets' convention."""
    return torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def check_items(dataset, shape, indices=(0, 1)):
    """Items have `shape`, are float32 in [-1, 1], repeat exactly, and differ by index."""
    items = [dataset[i] for i in indices]
    for item in items:
        assert item.shape == shape
        assert item.dtype == torch.float32
        assert item.min() >= -1.0 and item.max() <= 1.0
    for i, item in zip(indices, items):
        assert torch.equal(dataset[i], item)
    assert not torch.equal(items[0], items[1])


# ----------------------------------------------------------------------------- photos

PATCHES = {"size": 16, "train_patches": 32, "val_patches": 16}


def test_natural_patches_items():
    train = build_dataset("natural_patches", PATCHES, "train", seed=0)
    assert len(train) == 32
    check_items(train, (3, 16, 16))
    again = build_dataset("natural_patches", PATCHES, "train", seed=0)
    assert all(torch.equal(train[i], again[i]) for i in range(8))
    other_seed = build_dataset("natural_patches", PATCHES, "train", seed=1)
    assert not all(torch.equal(train[i], other_seed[i]) for i in range(8))


def test_natural_patches_val_photos_are_held_out():
    train = build_dataset("natural_patches", PATCHES, "train", seed=0)
    val = build_dataset("natural_patches", PATCHES, "val", seed=0)
    assert len(val.photo_names) == 2
    assert set(train.photo_names).isdisjoint(val.photo_names)
    assert set(train.photo_names) | set(val.photo_names) == set(data.natural_photos(256))
    assert {train.locate(i).photo for i in range(len(train))} <= set(train.photo_names)
    assert {val.locate(i).photo for i in range(len(val))} <= set(val.photo_names)
    assert not any(val.locate(i).flip for i in range(len(val)))
    assert any(train.locate(i).flip for i in range(len(train)))


def test_natural_patches_crop_matches_photo():
    val = build_dataset("natural_patches", PATCHES, "val", seed=3)
    where = val.locate(5)
    photo = data.natural_photos(256)[where.photo]
    expected = photo[where.top : where.top + 16, where.left : where.left + 16]
    assert torch.equal(val[5], as_unit(expected))


def test_photo_split_is_the_same_for_every_seed():
    held_out = tuple(data.photo_split("val", 2, 256))
    assert held_out == ("astronaut", "china.jpg")
    assert held_out == tuple(data.photo_split("val", 2, 128))
    assert set(data.photo_split("val", 3, 256)) == {"astronaut", "china.jpg", "chelsea"}


@pytest.mark.parametrize("name, params", [("natural_patches", PATCHES),
                                          ("panning_photos", {"frames": 2, "size": 8, "clips_val": 4})])
def test_validation_items_do_not_depend_on_the_seed(name, params):
    val = [build_dataset(name, params, "val", seed=seed) for seed in (0, 1, 7)]
    assert all(v.photo_names == val[0].photo_names for v in val)
    for index in range(len(val[0])):
        assert all(torch.equal(v[index], val[0][index]) for v in val[1:])
    train = [build_dataset(name, params, "train", seed=seed) for seed in (0, 1)]
    assert not all(torch.equal(train[0][i], train[1][i]) for i in range(len(train[0])))


def test_photos_are_downscaled_uint8():
    for name, photo in data.natural_photos(256).items():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3, name
        assert min(photo.shape[:2]) <= 256
    assert len(data.natural_photos(256)) >= data.MIN_PHOTOS


def test_panning_photos_clips():
    params = {"frames": 4, "size": 16, "clips_train": 8, "clips_val": 4}
    train = build_dataset("panning_photos", params, "train", seed=0)
    check_items(train, (3, 4, 16, 16))
    val = build_dataset("panning_photos", params, "val", seed=0)
    assert len(val) == 4
    assert set(train.photo_names).isdisjoint(val.photo_names)
    assert val.photo_names == build_dataset("natural_patches", {}, "val", seed=0).photo_names
    where = train.locate(2)
    steps = np.abs(np.diff(where.tops)).max(initial=0), np.abs(np.diff(where.lefts)).max(initial=0)
    assert max(steps) <= 4  # 3 pixels per frame, plus rounding
    photo = data.natural_photos(256)[where.photo]
    last = photo[where.tops[-1] : where.tops[-1] + 16, where.lefts[-1] : where.lefts[-1] + 16]
    assert torch.equal(train[2][:, -1], as_unit(last))


def test_panning_photos_without_motion_repeat_one_frame():
    still = build_dataset("panning_photos", {"frames": 3, "size": 8, "max_speed": 0.0}, "val", seed=0)
    clip = still[0]
    assert torch.equal(clip[:, 0], clip[:, 1]) and torch.equal(clip[:, 1], clip[:, 2])


# ----------------------------------------------------------------------------- digits


def test_digits():
    train = build_dataset("digits", {"size": 16}, "train", seed=0)
    val = build_dataset("digits", {"size": 16}, "val", seed=0)
    check_items(val, (3, 16, 16))
    assert len(train) + len(val) == 1797 and len(val) == round(1797 * 0.2)
    assert set(train.indices).isdisjoint(val.indices)
    item = val[0]
    assert torch.equal(item[0], item[1]) and torch.equal(item[0], item[2])
    # one held-out set for every seed: seeds vary the initialisation and the batches, not the test set
    assert np.array_equal(val.indices, build_dataset("digits", {"size": 16}, "val", seed=1).indices)


# ----------------------------------------------------------------------------- image_folder


def write_png(path, size, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_image_folder_with_split_subfolders(tmp_path):
    for i in range(3):
        write_png(tmp_path / "train" / "cat" / f"{i}.png", (20, 12), seed=i)
    write_png(tmp_path / "train" / "dog" / "a.PNG", (12, 30), seed=9)
    write_png(tmp_path / "val" / "cat" / "v.png", (16, 16), seed=10)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train = build_dataset("image_folder", {"root": str(tmp_path), "size": 8}, "train", seed=0)
    val = build_dataset("image_folder", {"root": tmp_path, "size": 8}, "val", seed=0)
    assert len(train) == 4 and len(val) == 1
    check_items(train, (3, 8, 8), indices=(0, 3))
    assert val[0].shape == (3, 8, 8)


def test_image_folder_flat_layout_split_is_the_same_for_every_seed(tmp_path):
    for i in range(10):
        write_png(tmp_path / f"class{i % 2}" / f"{i}.png", (10, 10), seed=i)
    params = {"root": str(tmp_path), "size": 10, "val_fraction": 0.3}
    train = build_dataset("image_folder", params, "train", seed=0)
    val = build_dataset("image_folder", params, "val", seed=0)
    assert len(train) == 7 and len(val) == 3
    assert set(train.files).isdisjoint(val.files)
    assert val.files == build_dataset("image_folder", params, "val", seed=0).files
    assert val.files == build_dataset("image_folder", params, "val", seed=5).files
    assert train.files == build_dataset("image_folder", params, "train", seed=5).files
    # size equal to the image side: no resampling, exact pixels
    original = np.asarray(Image.open(val.files[0]))
    assert torch.equal(val[0], as_unit(original))


def test_image_folder_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere") as error:
        build_dataset("image_folder", {"root": str(missing)}, "train", seed=0)
    assert "root/train/<class>" in str(error.value)
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images found under") as error:
        build_dataset("image_folder", {"root": str(tmp_path / "empty")}, "train", seed=0)
    assert str(tmp_path / "empty" / "train") in str(error.value)
    broken = tmp_path / "broken" / "train" / "cat" / "bad.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a png")
    dataset = build_dataset("image_folder", {"root": str(tmp_path / "broken")}, "train", seed=0)
    with pytest.raises(OSError, match="bad.png"):
        dataset[0]


# ----------------------------------------------------------------------------- cifar10


def write_cifar(folder, count=4, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names or data.CIFAR_FILES["train"] + data.CIFAR_FILES["val"]:
        batch = {
            b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=count)],
        }
        with open(folder / name, "wb") as stream:
            pickle.dump(batch, stream)


def test_cifar10_from_folder_or_parent(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    train = build_dataset("cifar10", {"root": str(tmp_path)}, "train", seed=0)
    val = build_dataset("cifar10", {"root": str(folder)}, "val", seed=0)
    assert len(train) == 20 and len(val) == 4
    check_items(train, (3, 32, 32))
    with open(folder / "test_batch", "rb") as stream:
        row = pickle.load(stream)[b"data"][1]
    expected = torch.from_numpy(row.reshape(3, 32, 32).astype(np.float32)) / 127.5 - 1
    assert torch.equal(val[1], expected)


def test_cifar10_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        build_dataset("cifar10", {"root": str(tmp_path / "nowhere")}, "train", seed=0)
    write_cifar(tmp_path / "partial", names=["data_batch_1", "data_batch_2"])
    with pytest.raises(FileNotFoundError, match="data_batch_3, data_batch_4, data_batch_5"):
        build_dataset("cifar10", {"root": str(tmp_path / "partial")}, "train", seed=0)
    with pytest.raises(FileNotFoundError, match="test_batch"):
        build_dataset("cifar10", {"root": str(tmp_path / "partial")}, "val", seed=0)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="malformed CIFAR-10 batch .*test_batch.*b'data'"):
        build_dataset("cifar10", {"root": str(garbage)}, "val", seed=0)

    wrong_shape = tmp_path / "wrong_shape"
    wrong_shape.mkdir()
    with open(wrong_shape / "test_batch", "wb") as stream:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, stream)
    with pytest.raises(ValueError, match=r"test_batch.*\(2, 100\).*\(N, 3072\)"):
        build_dataset("cifar10", {"root": str(wrong_shape)}, "val", seed=0)


class RunsCode:
    """Unpickling this calls a function: what a safe loader must refuse."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_cifar10_refuses_pickled_code(tmp_path):
    with open(tmp_path / "test_batch", "wb") as stream:
        pickle.dump({b"data": RunsCode()}, stream)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        build_dataset("cifar10", {"root": str(tmp_path)}, "val", seed=0)


# ----------------------------------------------------------------------------- video_folder


def ramp_clip(length, height=12, width=16, channels=3):
    """A clip whose frame t is filled with the value 10 * t."""
    values = (10 * np.arange(length, dtype=np.uint8))[:, None, None, None]
    return np.broadcast_to(values, (length, height, width, channels)).copy()


def write_frames(folder, clip):
    folder.mkdir(parents=True)
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"frame_{t}.png")  # unpadded: natural order needed


def test_video_folder_arrays_and_frame_folders(tmp_path):
    (tmp_path / "train").mkdir()
    np.save(tmp_path / "train" / "a.npy", ramp_clip(10))
    np.savez(tmp_path / "train" / "b.npz", ramp_clip(12, channels=1))
    write_frames(tmp_path / "train" / "c", ramp_clip(11))
    (tmp_path / "val").mkdir()
    np.save(tmp_path / "val" / "d.npy", ramp_clip(10))
    params = {"root": str(tmp_path), "frames": 3, "size": 8, "stride": 2}
    train = build_dataset("video_folder", params, "train", seed=0)
    val = build_dataset("video_folder", params, "val", seed=0)
    assert len(train) == 3 and len(val) == 1
    for index in range(3):
        clip = train[index]
        assert clip.shape == (3, 3, 8, 8) and clip.dtype == torch.float32
        assert torch.equal(clip, train[index])
        start = train.start(index)
        expected = torch.tensor([10.0 * (start + 2 * t) for t in range(3)]) / 127.5 - 1
        assert torch.allclose(clip.mean(dim=(0, 2, 3)), expected, atol=1e-6)


def test_video_folder_flat_layout_split_and_short_videos(tmp_path):
    for i in range(6):
        np.save(tmp_path / f"clip{i}.npy", ramp_clip(8 + i, height=6, width=6))
    params = {"root": str(tmp_path), "frames": 4, "size": 6, "val_fraction": 0.5}
    train = build_dataset("video_folder", params, "train", seed=0)
    val = build_dataset("video_folder", params, "val", seed=0)
    assert len(train) == 3 and len(val) == 3
    assert {v.path for v in train.videos}.isdisjoint(v.path for v in val.videos)
    check_items(train, (3, 4, 6, 6))
    with pytest.warns(UserWarning, match="shorter than 11 frames"):
        long_only = build_dataset("video_folder", dict(params, frames=11), "train", seed=0)
    assert all(v.length >= 11 for v in long_only.videos)


def test_video_folder_validation_clips_do_not_depend_on_the_seed(tmp_path):
    for i in range(8):
        np.save(tmp_path / f"clip{i}.npy", ramp_clip(20 + i, height=6, width=6))
    params = {"root": str(tmp_path), "frames": 2, "size": 6, "val_fraction": 0.5}
    val = [build_dataset("video_folder", params, "val", seed=seed) for seed in (0, 1, 7)]
    assert all([c.path for c in v.videos] == [c.path for c in val[0].videos] for v in val)
    assert all(v.start(i) == val[0].start(i) for v in val[1:] for i in range(len(val[0])))
    train = [build_dataset("video_folder", params, "train", seed=seed) for seed in (0, 1)]
    assert [c.path for c in train[0].videos] == [c.path for c in train[1].videos]
    assert [train[0].start(i) for i in range(4)] != [train[1].start(i) for i in range(4)]


def test_video_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*npy"):
        build_dataset("video_folder", {"root": str(tmp_path / "nowhere")}, "train", seed=0)
    (tmp_path / "empty" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no videos found under .*empty"):
        build_dataset("video_folder", {"root": str(tmp_path / "empty")}, "val", seed=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "flat.npy", np.zeros((4, 5, 5), np.uint8))
    np.save(bad / "ok.npy", ramp_clip(20))
    with pytest.raises(ValueError, match=r"flat.npy.*\(4, 5, 5\).*\(T, H, W, C\) uint8"):
        build_dataset("video_folder", {"root": str(bad)}, "train", seed=0)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.npz").write_bytes(b"not a zip")
    np.save(junk / "ok.npy", ramp_clip(20))
    with pytest.raises(ValueError, match="cannot read video array .*x.npz"):
        build_dataset("video_folder", {"root": str(junk)}, "train", seed=0)


# ----------------------------------------------------------------------------- registry


def test_dataset_names_and_params_are_introspectable():
    assert dataset_names() == sorted(
        ["natural_patches", "panning_photos", "digits", "image_folder", "cifar10", "video_folder"]
    )
    for name in dataset_names():
        assert dataclasses.is_dataclass(DATASETS[name].Params)
    fields = {f.name: f.default for f in dataclasses.fields(DATASETS["natural_patches"].Params)}
    assert fields == {
        "val_photos": 2, "max_side": 256, "size": 32, "train_patches": 8192, "val_patches": 1024
    }
    kinds = {name: data.dataset_kind(name) for name in dataset_names()}
    videos = {name for name, kind in kinds.items() if kind == "video"}
    assert videos == {"panning_photos", "video_folder"}
    assert set(kinds.values()) == {"image", "video"}
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        data.dataset_kind("cifar")


def test_unknown_dataset_suggests_closest():
    with pytest.raises(ValueError, match="'natural_patches'") as error:
        build_dataset("natural_patch", {}, "train", seed=0)
    assert "Valid names" in str(error.value) and "cifar10" in str(error.value)
    assert "natural_patches" in problems_of({"name": "natural_patch"})[0]


def test_validate_dataset_params():
    problems = problems_of({"name": "natural_patches", "sise": 16})
    assert len(problems) == 1 and "'sise'" in problems[0] and "Did you mean 'size'" in problems[0]
    assert problems[0].startswith("data.sise: unknown key 'sise'.")
    assert problems_of({"name": "natural_patches"}) == []
    # no disk access: a root that does not exist is only found out when building
    assert problems_of({"name": "image_folder", "root": "/does/not/exist/yet"}) == []
    assert problems_of({"name": "image_folder", "root": "r", "extensions": ["png", "jpg"]}) == []
    assert problems_of({"name": "panning_photos", "max_speed": 2}) == []
    problems = problems_of({"name": "image_folder", "size": "32", "val_fraction": 1.0})
    assert any("data.size:" in p and "integer" in p for p in problems)
    assert any("data.val_fraction:" in p and "between 0 and 1" in p for p in problems)
    assert any("data.root: missing" in p for p in problems)
    assert "integer" in problems_of({"name": "digits", "size": True})[0]
    assert "at least 1" in problems_of({"name": "video_folder", "root": "r", "stride": 0})[0]
    assert "mapping" in problems_of([("name", "digits"), ("size", 8)])[0]
    assert DataConfig.from_section({"name": "image_folder", "root": "r", "extensions": ["png"]}).params.extensions == (
        "png",)  # a YAML list becomes the tuple the Params declare


def test_build_dataset_rejects_bad_params_and_split():
    with pytest.raises(ValueError, match="Did you mean 'size'"):
        build_dataset("digits", {"sise": 8}, "train", seed=0)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        build_dataset("digits", {}, "test", seed=0)
    with pytest.raises(ValueError, match="val_photos"):
        build_dataset("natural_patches", {"val_photos": 100}, "val", seed=0)
    with pytest.raises(ValueError, match="smaller than the window side 64"):
        build_dataset("natural_patches", {"size": 64, "max_side": 32}, "train", seed=0)


def test_dataloader_batches():
    dataset = build_dataset("natural_patches", PATCHES, "val", seed=0)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch.shape == (4, 3, 16, 16)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
