"""pytest setup of the benchmarks folder (never collected by a plain `python -m pytest`: testpaths is tests/).

Run them with `python -m pytest benchmarks --benchmark-enable -p no:cacheprovider` (or through
`python -m benchmarks.report`, which also writes BENCHMARKS.md). Benchmark files are named bench_*.py and
collected here by `pytest_collect_file`, only when this folder is part of the run.
"""
from __future__ import annotations

import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_collect_file(file_path, parent):
    # A file named on the command line is collected by pytest's python plugin whatever its name.
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pyproject's addopts has --benchmark-skip so that the test suite never runs a benchmark; asking for
    # --benchmark-enable while running this folder means "run them".
    if config.getoption("benchmark_enable", default=False):
        config.option.benchmark_skip = False
    import torch

    threads = int(os.environ.get("BENCH_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def device():
    import torch

    from benchmarks._common import bench_device

    dev = bench_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("BENCH_DEVICE=cuda but torch.cuda.is_available() is False")
    return dev


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield
