"""Executors: how a suite's runs are spread. `local` runs them one after another in this process; with
`--jobs N` a process pool runs N at once and splits the cores between them (torch threads = cores / N).
Both call runner.execute_run, so the records are identical. The SLURM executor lives in harness/slurm.py.

This module imports neither torch nor the rest of the harness at import time: `run-suite --jobs N` starts
the pool (`start_pool`) first, so that the workers import torch and the harness while the parent process
does the same and loads the suite, instead of one after the other.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .suite import RunSpec


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(runs: list[RunSpec], out: Path, force: bool = False, progress: bool = True) -> list[dict]:
    """Run every spec in this process, in order."""
    from .runner import execute_run

    records = []
    outer = tqdm(runs, desc="runs", disable=not progress or len(runs) < 2, dynamic_ncols=True)
    for spec in outer:
        record = execute_run(spec, out, force=force, progress=progress)
        if record is not None:
            records.append(record)
            outer.set_postfix(last=record["status"])
    return records


#: What every worker needs, imported once in the forkserver that forks the workers: torch, the harness, and
#: torch._dynamo, which torch.optim imports when the first optimiser is built (over a second).
WORKER_MODULES = ["torch", "torch._dynamo", "harness.runner", "harness.train"]


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver on Linux: one clean process imports WORKER_MODULES once and forks each worker from there,
    before any torch thread exists. spawn elsewhere (each worker imports): macOS system frameworks are not
    safe to use in a child forked without exec, which is why spawn is Python's default there."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - macOS, Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def _pool_worker_init(threads: int, environment: dict[str, str]) -> None:
    """Torch threads, and the environment of the pool's creator now (a forkserver, started once per process,
    would otherwise hand on the environment of its own start)."""
    import importlib

    os.environ.clear()
    os.environ.update(environment)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    for module in WORKER_MODULES:  # already there when forked from the forkserver
        importlib.import_module(module)
    import torch

    torch.set_num_threads(threads)


def _pool_run(spec: RunSpec, out: str, force: bool) -> dict | None:
    from .runner import execute_run

    return execute_run(spec, out, force=force, progress=False)


def start_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of `jobs` workers with cores / jobs torch threads each, starting now (`_worker_context`).

    A ProcessPoolExecutor starts a worker per submitted task, and starting one waits for the forkserver's
    imports; one empty task per worker is submitted from a background thread, so the caller goes on (to
    import torch and load the suite) meanwhile.
    """
    threads = max(1, _cores() // jobs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context(), initializer=_pool_worker_init,
                               initargs=(threads, dict(os.environ)))

    def start_workers():
        try:
            for _ in range(jobs):
                pool.submit(os.getpid)
        except RuntimeError:  # the caller shut the pool down first (its suite did not load)
            pass

    threading.Thread(target=start_workers, name="start-pool-workers", daemon=True).start()
    return pool


def run_pool(runs: list[RunSpec], out: Path, jobs: int, force: bool = False, progress: bool = True,
             pool: ProcessPoolExecutor | None = None) -> list[dict]:
    """Run specs in `jobs` worker processes with cores / jobs torch threads each (`pool`: from start_pool).

    The pool is shut down without waiting for its idle workers to exit: the caller goes on, e.g. to the
    report, while they do.
    """
    pool = pool or start_pool(jobs)
    records = []
    try:
        futures = [pool.submit(_pool_run, spec, str(out), force) for spec in runs]
        with tqdm(total=len(futures), desc=f"runs ({jobs} workers)", disable=not progress, dynamic_ncols=True) as bar:
            for future in as_completed(futures):
                record = future.result()
                if record is not None:
                    records.append(record)
                    bar.set_postfix(last=record["status"])
                bar.update(1)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return records
