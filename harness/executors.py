"""Executors: how a suite's runs are spread. `local` runs them one after another in this process; with
`--jobs N` a process pool runs N at once and splits the cores between them (torch threads = cores / N).
Both call runner.execute_run, so the records are identical. The SLURM executor lives in harness/slurm.py.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from .runner import execute_run
from .suite import RunSpec


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(runs: list[RunSpec], out: Path, force: bool = False, progress: bool = True) -> list[dict]:
    """Run every spec in this process, in order."""
    records = []
    outer = tqdm(runs, desc="runs", disable=not progress or len(runs) < 2, dynamic_ncols=True)
    for spec in outer:
        record = execute_run(spec, out, force=force, progress=progress)
        if record is not None:
            records.append(record)
            outer.set_postfix(last=record["status"])
    return records


def _pool_worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _pool_run(spec: RunSpec, out: str, force: bool) -> dict | None:
    return execute_run(spec, out, force=force, progress=False)


def run_pool(runs: list[RunSpec], out: Path, jobs: int, force: bool = False, progress: bool = True) -> list[dict]:
    """Run specs in `jobs` worker processes with cores / jobs torch threads each."""
    threads = max(1, _cores() // jobs)
    context = multiprocessing.get_context("spawn")
    records = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_pool_worker_init,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_pool_run, spec, str(out), force) for spec in runs]
        with tqdm(total=len(futures), desc=f"runs ({jobs} workers)", disable=not progress, dynamic_ncols=True) as bar:
            for future in as_completed(futures):
                record = future.result()
                if record is not None:
                    records.append(record)
                    bar.set_postfix(last=record["status"])
                bar.update(1)
    return records
