"""Loading on CUDA (README "Data", Loading): CPU batches come from pinned memory and reach the GPU by a
non-blocking copy, with the same values; a run on CUDA with loader workers finishes with finite metrics and
channels-last images. Marked `cuda` and skipped, with the reason, where torch.cuda.is_available() is False."""
from __future__ import annotations

import math

import pytest
import torch
from helpers_harness import tiny_raw, write_yaml

from harness.data.loading import make_loader, to_device
from harness.status import RunStatus
from harness.suite import load_suite
from harness.train import StepBatchSampler, Trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")]


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.full((3, 8, 8), float(i)) / 32


def test_pinned_batches_reach_the_gpu_without_blocking_and_unchanged():
    loader = make_loader(_Items(), 2, pin_memory=True, batch_sampler=StepBatchSampler(32, 8, 0, 0, 4))
    device = torch.device("cuda")
    for batch, skipped in loader:
        assert batch.is_pinned() and skipped == ()
        on_gpu = to_device(batch, device, torch.channels_last)
        assert on_gpu.is_cuda and on_gpu.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(on_gpu.cpu(), batch, rtol=0, atol=0)


def test_a_cuda_run_with_loader_workers_finishes(tmp_path):
    raw = tiny_raw("cuda_workers", base={"training": {"device": "cuda", "num_workers": 2, "steps": 4}})
    spec = load_suite(write_yaml(tmp_path / "cuda.yaml", raw)).runs[0]
    trainer = Trainer(spec.config, tmp_path / "run", progress=False)
    trainer.build()
    batch = next(iter(trainer.train_batches()))
    assert batch.is_cuda and batch.is_contiguous(memory_format=trainer.memory_format)
    trainer.resume()
    result = trainer.train() or trainer.finish()
    assert result.status == RunStatus.FINISHED, result
    assert all(math.isfinite(result.metrics[k]) for k in ("train_loss", "val_rec_loss"))
