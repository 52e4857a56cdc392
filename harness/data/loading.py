"""Loading batches: items are stacked on the CPU (in the DataLoader's worker processes when there are any),
and a batch moves to the device in the training loop (`to_device`: from pinned memory, without waiting, on
CUDA).

Every item is a pure function of (seed, split, index) (harness/data/__init__.py), so the batches are the same
with or without workers. A dataset with `skip_corrupt` (image_folder, video_folder) replaces an unreadable
file's item by a readable one; its `load(index)` says which files it skipped, and the loader hands those
paths along with each batch, so the run counts them in the main process whatever worker read them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..cores import run_cores

__all__ = ["CpuBatch", "LoadedItems", "collate_on_cpu", "default_num_workers", "device_batches",
           "make_loader", "to_device"]

#: Batches each worker prepares ahead (DataLoader prefetch_factor).
PREFETCH_BATCHES = 4

#: A stacked batch on the CPU and the paths of the unreadable files skipped to make it.
CpuBatch = tuple[torch.Tensor, tuple[str, ...]]


def default_num_workers(dataset: Dataset | None) -> int:
    """DataLoader workers when `training.num_workers` is null. For a dataset that decodes files (its class has
    `decodes_files`: image_folder, video_folder), one per core given to the run but the one the training
    process itself uses; for the others, whose items are cut from arrays in memory in microseconds, 0 (a
    worker would only add its start-up and the transfer of every batch between processes)."""
    return run_cores() - 1 if getattr(dataset, "decodes_files", False) else 0


class LoadedItems(Dataset):
    """`dataset`'s items as (tensor, paths of the files skipped to make it): `dataset.load(index)` for a
    dataset that can skip files, (dataset[index], ()) for any other."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.load = getattr(dataset, "load", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        return self.load(index) if self.load is not None else (self.dataset[index], ())


def collate_on_cpu(items: Sequence[tuple[torch.Tensor, tuple[str, ...]]]) -> CpuBatch:
    """The items stacked into one CPU batch, and every file skipped to make them."""
    return torch.stack([item for item, _ in items]), tuple(path for _, skipped in items for path in skipped)


def make_loader(dataset: Dataset, num_workers: int, pin_memory: bool, generator: torch.Generator | None = None,
                batch_sampler: Sampler | None = None, batch_size: int | None = None) -> DataLoader:
    """A DataLoader of `CpuBatch`es of `dataset`, in the order of `batch_sampler` or in index order by
    `batch_size`; workers are persistent (kept across the loader's iterations) and prefetch
    `PREFETCH_BATCHES` batches each. `generator` draws the workers' base seed (see Trainer.loader_generator)."""
    workers = {"persistent_workers": True, "prefetch_factor": PREFETCH_BATCHES} if num_workers > 0 else {}
    order = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    return DataLoader(LoadedItems(dataset), collate_fn=collate_on_cpu, num_workers=num_workers,
                      pin_memory=pin_memory, generator=generator, **order, **workers)


def to_device(batch: torch.Tensor, device: torch.device, memory_format=torch.contiguous_format) -> torch.Tensor:
    """A CPU batch on `device` (non-blocking: from pinned memory the copy overlaps the work already queued),
    images in `memory_format` (channels-last for the convolutional families on CUDA)."""
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=memory_format) if batch.ndim == 4 else batch


def device_batches(batches: Iterable[CpuBatch], device: torch.device, skipped: set[str],
                   memory_format=torch.contiguous_format) -> Iterator[torch.Tensor]:
    """The batches on `device`; the paths of the files skipped to make them are added to `skipped`."""
    for batch, skipped_paths in batches:
        skipped.update(skipped_paths)
        yield to_device(batch, device, memory_format)
