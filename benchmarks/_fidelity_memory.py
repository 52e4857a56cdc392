"""Peak host memory of r-FID / r-IS on N validation images, in a fresh process (benchmarks/bench_data.py runs it):
`python -m benchmarks._fidelity_memory {streamed,before} N WEIGHTS_FILE`, which prints one JSON line.

The run's `fidelity_for_run` (streamed) or the code before it (benchmarks/_baseline_data.py: every image kept)
evaluates a "model" that dims its input (x * 0.875) on N synthetic 256x256 images, with a stand-in Inception
weights file (random weights of torch-fidelity's inception-v3-compat architecture, loaded and checked as real
ones). The Inception forward itself is replaced, in both variants alike, by a fixed random projection of an 8x8
grid of pixels with the same outputs (2048 pool features, 1008 logits): on this CPU the real forward takes about
a second per image, and its activations are per batch, the same for any N. The model, the images and the
projection cost next to nothing, so the time is that of the measured code: the harness's conversions and
statistics per batch and its one final 2048-dimension eigenvalue problem (or torch-fidelity's, before). The peak
is the resident set size sampled every 2 ms during the call, less the resident set size just before it.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from contextlib import nullcontext
from unittest import mock

import torch

SIZE = 256
BATCH = 64


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The largest resident set size seen while the context is open, sampled by a thread."""

    def __enter__(self):
        self.start = self.peak = _rss_bytes()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _rss_bytes())


def save_standin_weights(path: str) -> None:
    """A state dict of torch-fidelity's inception-v3-compat architecture (random weights), built offline."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(model.state_dict(), path)


GRID = 8  # the stand-in forward reads a GRID x GRID grid of pixels of each image


@functools.cache
def _projections() -> dict[str, torch.Tensor]:
    """The stand-in's fixed random projections of the 3 * GRID * GRID sampled values, by output name."""
    g = torch.Generator().manual_seed(0)
    return {"2048": torch.randn(3 * GRID * GRID, 2048, generator=g),
            "logits_unbiased": torch.randn(3 * GRID * GRID, 1008, generator=g)}


def _projection_forward(self, x):
    """Stand-in for FeatureExtractorInceptionV3.forward: uint8 (B, 3, H, W) -> the requested features."""
    step = x.shape[-1] // GRID
    samples = x[:, :, step // 2::step, step // 2::step].float().div(255.0).flatten(1)
    return tuple(samples @ _projections()[name] for name in self.features_list)


class BlockImages(torch.utils.data.Dataset):
    """N synthetic 256x256 images in [-1, 1]: each a GRID x GRID grid of random colour blocks, seeded by its
    index."""

    kind = "image"

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        block = SIZE // GRID
        colours = torch.rand(3, GRID, 1, GRID, 1, generator=torch.Generator().manual_seed(i)).mul_(2).sub_(1)
        return colours.expand(3, GRID, block, GRID, block).reshape(3, SIZE, SIZE)


class Dim(torch.nn.Module):
    """A "model" whose reconstruction is its input dimmed: one pass over the batch."""

    def forward(self, x):
        return x * 0.875, None


def measure(variant: str, n: int, weights: str) -> dict:
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from benchmarks import _baseline_data
    from harness.config import MetricsConfig
    from harness.fidelity import fidelity_for_run

    dataset, model = BlockImages(n), Dim()
    config = MetricsConfig(fidelity=True, inception_weights=weights)
    with mock.patch.object(fe.FeatureExtractorInceptionV3, "forward", _projection_forward):
        started = time.perf_counter()
        with PeakRss() as rss:
            if variant == "streamed":
                metrics, _ = fidelity_for_run(model, dataset, config, BATCH, "cpu", nullcontext)
            else:
                metrics = _baseline_data.image_fidelity_for_run(model, dataset, n, BATCH, weights)
        seconds = time.perf_counter() - started
    return {"variant": variant, "n": n, "peak_bytes": rss.peak - rss.start, "seconds": seconds, "metrics": metrics}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1") or 1) or 1)
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
