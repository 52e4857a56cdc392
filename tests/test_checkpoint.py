"""Checkpoints (harness/checkpoint.py): loaded with weights_only=True to the CPU, so a planted payload is
refused and never run; every random generator's state survives a save and a load."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from harness import checkpoint
from harness.checkpoint import CheckpointError, load_checkpoint, restore_rng_state, rng_state, save_checkpoint

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


class Payload:
    """Unpickling this runs os.mkdir(target): what a planted checkpoint could do with any callable."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def plant_payload(path, target) -> None:
    """A checkpoint-shaped file whose history runs code when loaded with weights_only=False."""
    state = {key: {} for key in checkpoint.KEYS}
    state["history"] = [Payload(target)]
    torch.save(state, path)


def _draws() -> tuple:
    return torch.rand(4), np.random.rand(4), np.random.randn(), random.random(), random.gauss(0.0, 1.0)


def _assert_same_draws(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2:] == want[2:]


def test_random_state_round_trip_through_a_checkpoint(tmp_path):
    """torch's, numpy's (with a cached gaussian) and Python's generators draw the same after a restore."""
    np.random.seed(3)
    random.seed(3)
    torch.manual_seed(3)
    np.random.randn()  # numpy caches the second gaussian of a pair: has_gauss = 1
    random.gauss(0.0, 1.0)  # so does Python: gauss_next is set
    state = {key: 0 for key in checkpoint.KEYS}
    state["random_state"] = rng_state()
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    expected = _draws()
    _draws()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "checkpoint.pt")["random_state"])
    _assert_same_draws(_draws(), expected)


def test_planted_payload_is_refused_not_run(tmp_path):
    path, target = tmp_path / "checkpoint.pt", tmp_path / "payload-ran"
    plant_payload(path, target)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "refused" in message and "mkdir" in message and "--force" in message
    assert "weights_only` set to `False`" not in message  # torch's advice to load it unsafely is left out
    assert not target.exists()
    torch.load(path, weights_only=False)  # the payload is real: the unsafe load does run it
    assert target.is_dir()


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_unreadable_checkpoint_names_the_file(tmp_path, payload):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "cannot read this checkpoint" in str(error.value)


def test_checkpoint_without_the_expected_keys(tmp_path):
    """E.g. one written by an older harness (its RNG state under another key)."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "rng": torch.get_rng_state(), "step": 3}, path)
    with pytest.raises(CheckpointError, match="lacks optimizers, schedulers, random_state, history, elapsed"):
        load_checkpoint(path)


@pytest.mark.cuda
@needs_cuda
def test_cuda_random_state_round_trip(tmp_path):
    """Every CUDA device's generator is saved as CPU tensors and restored, and the CPU generator's state is
    restored too (a checkpoint loaded with map_location=cuda moved it to the GPU, which set_rng_state
    rejects)."""
    torch.manual_seed(5)
    torch.cuda.manual_seed_all(5)
    state = {key: 0 for key in checkpoint.KEYS}
    state["random_state"] = rng_state()
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    devices = range(torch.cuda.device_count())
    expected = [torch.rand(8, device=f"cuda:{i}") for i in devices], torch.rand(8)
    [torch.rand(8, device=f"cuda:{i}") for i in devices], torch.rand(8)
    loaded = load_checkpoint(tmp_path / "checkpoint.pt")["random_state"]
    assert len(loaded["cuda"]) == torch.cuda.device_count()
    assert all(s.device.type == "cpu" for s in loaded["cuda"]) and loaded["torch"].device.type == "cpu"
    restore_rng_state(loaded)
    got = [torch.rand(8, device=f"cuda:{i}") for i in devices], torch.rand(8)
    for a, b in zip(got[0], expected[0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
