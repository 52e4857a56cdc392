"""(f) A suite of 4 short runs through the CLI, `run-suite <suite> --jobs 1` against `--jobs 2`.

Each call is a fresh Python process running `harness.cli.run_suite_main([suite, "--jobs", J, "--out", DIR,
"--no-progress"])` into a fresh temporary results directory, as a user's `run-suite` invocation would be
(so neither variant profits from caches warmed by the other benchmarks). The suite: VQ-VAE cpu preset, STE
and rotation, two seeds, STEPS steps of batch 64 each. `--jobs 1` runs the 4 runs one after another with the
benchmark's torch threads (BENCH_THREADS; `python -m benchmarks.report --threads 0` gives torch's default,
all cores); `--jobs 2` runs a process pool of 2 workers with cores/2 threads each (harness/executors.py).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks._common import interleaved
from harness.cores import usable_cores

ROOT = Path(__file__).resolve().parent.parent
STEPS = 32

SUITE = """\
name: bench_jobs
description: 4 short runs for the --jobs benchmark
seeds: [0, 1]
base:
  model: {family: vqvae, preset: cpu}
  data: {name: natural_patches, size: 32}
  training: {steps: STEPS, batch_size: 64, log_every: 10, checkpoint_every: 100000, eval_batches: 1,
             progress_bar: false, device: cpu}
  metrics: {diagnostics: false}
grid:
  estimator.name: [ste, rotation]
"""


#: What the `run-suite` console script runs. The torch threads of --jobs 1 come from OMP_NUM_THREADS (set
#: in the call's environment), so that the call imports nothing before run_suite_main, as run-suite does.
CALL = """\
import sys
from harness.cli import exiting, run_suite_main
sys.exit(exiting(run_suite_main(sys.argv[1:])))
"""


def runs_span(out: Path) -> float:
    """Seconds from the first run's start to the last run's end, from the records (1 s resolution)."""
    records = [json.loads(path.read_text()) for path in out.glob("**/record.json")]
    started = min(dt.datetime.fromisoformat(r["started"]) for r in records)
    finished = max(dt.datetime.fromisoformat(r["finished"]) for r in records)
    return (finished - started).total_seconds()


def test_suite_jobs_2_vs_jobs_1(benchmark, request, device, tmp_path):
    benchmark.group = "f. run-suite, 4 short runs: --jobs 2 vs --jobs 1"
    if device.type != "cpu":
        pytest.skip("the --jobs benchmark runs on the CPU only")
    suite_path = tmp_path / "bench_jobs.yaml"
    suite_path.write_text(SUITE.replace("STEPS", str(STEPS)))
    counter = {"n": 0}
    spans = {"jobs 1": [], "jobs 2": []}
    threads = int(os.environ.get("BENCH_THREADS", "0") or 0)

    def run(jobs: int):
        def call():
            counter["n"] += 1
            out = tmp_path / f"results_{jobs}_{counter['n']}"
            args = [str(suite_path), "--jobs", str(jobs), "--out", str(out), "--no-progress"]
            env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}))
            done = subprocess.run([sys.executable, "-c", CALL, *args], cwd=ROOT, env=env, capture_output=True,
                                  text=True)
            assert done.returncode == 0, f"run-suite --jobs {jobs} exited with {done.returncode}: {done.stderr[-2000:]}"
            spans[f"jobs {jobs}"].append(runs_span(out))

        return call

    # No warm-up call (each call is a fresh process anyway): two interleaved rounds.
    info = interleaved(benchmark, request, "jobs 2", run(2), {"jobs 1": run(1)}, device, cap=2,
                       first_times={"jobs 2": 60.0, "jobs 1": 60.0})
    info.update(section="f", runs=4, steps=STEPS, batch=64, cores=usable_cores(), suite=SUITE.replace("STEPS", str(STEPS)),
                jobs1_threads=threads if threads > 0 else torch.get_num_threads(), jobs2_threads=max(1, usable_cores() // 2),
                runs_span=spans)
