"""Helpers shared by the benchmarks: device and threads from the environment, interleaved timing, peak memory.

Environment (set by `python -m benchmarks.report`, or by hand):
* BENCH_DEVICE: "cpu" (default) or "cuda". On CUDA the model code runs under bfloat16 autocast (the
  quantizer and estimator arithmetic stay float32, as in the harness's `precision: bf16`).
* BENCH_THREADS: torch intra-op threads for the benchmark process (0 or unset: torch's default).

Timing. Every benchmark compares variants measured in the same run: pytest-benchmark times the subject
(`benchmark.pedantic`), and every other variant runs in the same rounds, alternately just before and just
after the subject (in rotating order). Every call, the subject's included, is also timed here with two
clocks: wall-clock (perf_counter, synchronised on CUDA) and process CPU time (process_time: with one torch
thread on a shared machine, the work done without the time spent waiting for a core). Each variant's
per-round times, the min and median, and the ratios subject/other (min/min, median/median and the median of
per-round ratios) go into the benchmark's `extra_info`, keyed by clock, which `benchmarks.report` reads.

Peak memory is measured, not estimated: on CUDA with torch.cuda.max_memory_allocated; on the CPU as the
peak of live bytes allocated through PyTorch's allocator during the call, replayed from the profiler's
allocation events (torch.profiler, profile_memory=True). Allocations made outside PyTorch's allocator (a
BLAS library's internal workspace) are not included.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time

import torch

DEVICE_ENV = "BENCH_DEVICE"
CLOCKS = ("wall", "cpu")
THREADS_ENV = "BENCH_THREADS"


def bench_device() -> torch.device:
    return torch.device(os.environ.get(DEVICE_ENV, "cpu") or "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA (the GPU variant), nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed(fn, device: torch.device) -> float:
    """Wall-clock seconds of one call (synchronised on CUDA)."""
    return timed2(fn, device)[0]


def timed2(fn, device: torch.device) -> tuple[float, float]:
    """(wall-clock seconds, process CPU seconds) of one call."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def rounds_for(config, seconds_per_round: float, cap: int = 50) -> int:
    """Rounds from --benchmark-max-time / --benchmark-min-rounds, never above `cap`."""
    max_time = float(config.getoption("benchmark_max_time", 1.0) or 1.0)
    min_rounds = int(config.getoption("benchmark_min_rounds", 5) or 5)
    wanted = math.ceil(max_time / max(seconds_per_round, 1e-9))
    return int(max(1, min(cap, max(min_rounds, wanted))))


def summary(times: list[float]) -> dict:
    return {"min": min(times), "median": statistics.median(times), "rounds": len(times)}


def ratio_summary(a: list[float], b: list[float]) -> dict:
    """a relative to b: min/min, median/median, and the median of the per-round ratios."""
    paired = [x / y for x, y in zip(a, b) if y > 0]
    return {
        "min": min(a) / min(b),
        "median": statistics.median(a) / statistics.median(b),
        "paired_median": statistics.median(paired) if paired else float("nan"),
    }


def interleaved(benchmark, request, subject_name: str, subject, others: dict, device: torch.device,
                cap: int = 50, warmup: bool = True, first_times: dict | None = None) -> dict:
    """Time `subject` with pytest-benchmark and each of `others` (name -> callable) in the same rounds.

    Every call is also timed here with two clocks, wall-clock and process CPU time (`timed2`); both go into
    extra_info ("times", "summary", "ratios", each keyed by clock). warmup: run every variant once first
    (the second call's time estimates the round length). `first_times` (name -> seconds) replaces that
    warm-up for expensive variants the caller has already run once.
    """
    variants = {subject_name: subject, **others}
    if first_times is None:
        first_times = {}
        for name, fn in variants.items():
            first_times[name] = timed(fn, device)
            if warmup:  # the first call also pays one-time costs (allocator growth, kernel selection)
                first_times[name] = timed(fn, device)
    rounds = rounds_for(request.config, sum(first_times.values()), cap)
    order = list(others)
    times = {clock: {name: [] for name in variants} for clock in CLOCKS}
    state = {"round": 0}

    def record(name, fn):
        wall, cpu = timed2(fn, device)
        times["wall"][name].append(wall)
        times["cpu"][name].append(cpu)

    def run_others():
        shift = state["round"] % max(1, len(order))
        for name in order[shift:] + order[:shift]:
            record(name, others[name])

    def setup():
        if state["round"] % 2 == 0:
            run_others()

    def teardown(*_args, **_kwargs):
        if state["round"] % 2 == 1:
            run_others()
        state["round"] += 1

    benchmark.pedantic(record, args=(subject_name, subject), setup=setup, teardown=teardown, rounds=rounds,
                       iterations=1, warmup_rounds=0)
    info = benchmark.extra_info
    info["subject"] = subject_name
    info["variants"] = list(variants)
    info["device"] = str(device)
    info["threads"] = torch.get_num_threads()
    info["times"] = times
    info["summary"] = {clock: {name: summary(t) for name, t in per.items()} for clock, per in times.items()}
    info["ratios"] = {clock: {name: ratio_summary(per[subject_name], per[name]) for name in order}
                      for clock, per in times.items()}
    return info


def peak_memory(fn, device: torch.device) -> int:
    """Peak bytes allocated during fn() on top of what was allocated before (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return int(peak)


def timed_with_peak(fn, device: torch.device) -> tuple[float, int]:
    """(seconds, peak bytes) of one call; the time is taken without the profiler, in a second call."""
    peak = peak_memory(fn, device)
    return timed(fn, device), peak


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import importlib.metadata as metadata

        info["vector_quantize_pytorch"] = metadata.version("vector-quantize-pytorch")
    except Exception:  # noqa: BLE001 - optional
        info["vector_quantize_pytorch"] = None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
