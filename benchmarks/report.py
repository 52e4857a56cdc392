"""Run the benchmarks and write BENCHMARKS.md: `python -m benchmarks.report [--device cuda]`.

Runs `python -m pytest benchmarks --benchmark-enable -p no:cacheprovider --benchmark-json=<tmp>` in a
subprocess (BENCH_DEVICE / BENCH_THREADS in its environment, see benchmarks/_common.py), then renders every
figure (min / median over the interleaved rounds), every ratio and the targets into a Markdown file at the
repository root: BENCHMARKS.md for the CPU, BENCHMARKS_CUDA.md for `--device cuda` (bfloat16 autocast, the
estimator arithmetic in float32; the title names the card). Without a CUDA device `--device cuda` only
prints a note and writes nothing. `--from-json FILE` re-renders a saved run without running anything.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCH_METHODS = ("chunked", "chunked (before)", "cdist+argmin", "naive broadcast")

#: glibc malloc: large buffers recycled as in a long-running process, not faulted in anew depending on history.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}

TARGETS_TEXT = {
    "step": "rotation / STE, full training step (VQ-VAE cpu preset) ≤ 1.05",
    "alone": "rotation / STE, estimator alone fwd+bwd, N=65536, D ∈ {32, 256} ≤ 1.5",
    "vqp": "ours / vector-quantize-pytorch, rotation path ≤ 0.5",
    "search": "chunked search / cdist+argmin ≤ 1.10 everywhere; peak memory bounded by the chunk at K=16384",
    "overhead": "harness overhead (train_run vs bare loop, per training step) ≤ 5%",
    "jobs": "run-suite --jobs 2 / --jobs 1 (4 short runs) ≤ 0.65",
}


# -- running ---------------------------------------------------------------------------------------------

def run_benchmarks(json_path: Path, device: str, threads: int, max_time: float, min_rounds: int,
                   select: str | None) -> int:
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-enable", "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", f"--benchmark-max-time={max_time}",
           f"--benchmark-min-rounds={min_rounds}", "--benchmark-columns=min,median,rounds", "-q", "-rs"]
    if select:
        cmd += ["-k", select]
    env = dict(os.environ, BENCH_DEVICE=device, BENCH_THREADS=str(threads))
    for name, value in MALLOC_SETTINGS.items():  # see "How these numbers are measured"
        env.setdefault(name, value)
    print("running:", " ".join(cmd), f"(BENCH_DEVICE={device} BENCH_THREADS={threads})", flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


# -- formatting ------------------------------------------------------------------------------------------

def fmt_s(seconds: float) -> str:
    if seconds is None:
        return "–"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_pair(stats: dict | None) -> str:
    return "–" if not stats else f"{fmt_s(stats['min'])} / {fmt_s(stats['median'])}"


def fmt_ratio(ratio: dict | None) -> str:
    return "–" if not ratio else f"{ratio['min']:.2f} / {ratio['median']:.2f}"


def fmt_bytes(nbytes: float | None) -> str:
    if nbytes is None:
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def holds(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**holds**" if flag else "**does not hold**")


# -- rendering -------------------------------------------------------------------------------------------

class Run:
    def __init__(self, data: dict, clock: str):
        self.data = data
        self.clock = clock
        self.benchmarks = data.get("benchmarks", [])

    def section(self, name: str) -> list[dict]:
        return [b["extra_info"] for b in self.benchmarks if b.get("extra_info", {}).get("section") == name]

    def stats(self, info: dict, variant: str, clock: str | None = None) -> dict | None:
        return info.get("summary", {}).get(clock or self.clock, {}).get(variant)

    def ratio(self, info: dict, other: str, clock: str | None = None) -> dict | None:
        return info.get("ratios", {}).get(clock or self.clock, {}).get(other)

    def variant_ratio(self, info: dict, variant: str, other: str) -> dict | None:
        """variant relative to other, both timed in the same rounds (min/min, median/median)."""
        a, b = self.stats(info, variant), self.stats(info, other)
        if not a or not b:
            return None
        return {"min": a["min"] / b["min"], "median": a["median"] / b["median"]}


def render(data: dict, machine: dict, device: str, threads_arg: int, command: str, exit_code: int) -> tuple[str, dict]:
    threads = next((b["extra_info"].get("threads") for b in data.get("benchmarks", [])
                    if "threads" in b.get("extra_info", {})), None)
    clock = "cpu" if device == "cpu" and threads == 1 else "wall"
    run = Run(data, clock)
    clock_name = "process CPU time" if clock == "cpu" else "wall-clock time"
    out: list[str] = []
    verdicts: dict[str, tuple[str, bool | None]] = {}
    title = "Benchmarks" if device == "cpu" else f"Benchmarks on CUDA ({machine.get('gpu', '?')}, bf16 autocast)"
    out.append(f"# {title}\n")
    when = str(data.get("datetime") or _dt.datetime.now().isoformat())[:16].replace("T", " ")
    out.append(f"Generated by `{command}` from a real run (results saved {when} UTC; "
               f"pytest exit code {exit_code}). Regenerate with the same command; the raw pytest-benchmark "
               "JSON can be kept with `--json FILE` and re-rendered with `--from-json FILE`.\n")

    # machine
    out.append("## Machine\n")
    rows = [["CPU", machine.get("cpu")], ["cores available / logical CPUs", f"{machine.get('cores')} / "
                                                                          f"{machine.get('logical_cpus')}"],
            ["memory", f"{machine.get('memory_gib')} GiB"], ["torch", machine.get("torch")],
            ["torch threads in the benchmarks", f"{threads} (BENCH_THREADS={threads_arg})"],
            ["python", machine.get("python")], ["vector-quantize-pytorch", machine.get("vector_quantize_pytorch")],
            ["load average before / after", f"{machine.get('load_before')} / {machine.get('load_after')}"],
            ["glibc malloc in the benchmark process", machine.get("malloc", "not recorded (adaptive)")]]
    if device == "cuda":
        rows += [["GPU", machine.get("gpu")], ["CUDA", machine.get("cuda")]]
    out.append(table(["", ""], rows) + "\n")

    out.append("## How these numbers are measured\n")
    out.append(
        "* Every comparison is measured **in the same run, interleaved**: pytest-benchmark times the subject "
        "(`benchmark.pedantic`); each other variant runs in the same rounds, alternately just before and just "
        "after it, in rotating order (benchmarks/_common.py `interleaved`). Figures are **min / median** over "
        "the rounds; ratios are subject/other as **min/min / median/median**.\n"
        f"* Clock: **{clock_name}**"
        + (" (user + system CPU of the benchmark process, `time.process_time`). The machine is shared with other "
           "workers (see the load average): the wall clock also counts the time the process waited for a core, "
           "which has nothing to do with the code, and would make the ratios depend on who else ran. With one "
           "torch thread the process CPU time is the work done, page faults included. The wall-clock figures "
           "are recorded too (`--json`) and shown where they matter (harness overhead, --jobs)."
           if clock == "cpu" else " (synchronised on CUDA).")
        + "\n* Peak memory is **measured**: on the CPU as the peak of live bytes allocated through PyTorch's "
        "allocator during the call, replayed from torch.profiler's allocation events (`profile_memory=True`); on "
        "CUDA with `torch.cuda.max_memory_allocated`. Allocations outside PyTorch's allocator (BLAS workspace) are "
        "not included; the analytic size of the largest temporary is shown next to it.\n"
        "* \"(before)\" variants are the code as committed before this performance work (benchmarks/_baseline.py), "
        "measured in the same rounds.\n"
        "* A fresh multi-MiB buffer costs page faults (counted in the CPU time). Left to itself, glibc's "
        "adaptive mmap threshold decides from what the process allocated before whether an 8 MiB buffer "
        "(N = 65536, D = 32) is recycled or faulted in again, which moved the STE's time there between 0.7 and "
        "7 ms from test to test. The benchmark process therefore runs with the threshold fixed at its 32 MiB "
        "maximum and trimming off (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, unless already set): the "
        "steady state of a long training process, where buffers up to 32 MiB are recycled; larger ones (64 MiB "
        "at D = 256) are always fresh.\n")

    # --- a
    a = run.section("a")
    out.append("## a. Transport estimators alone, forward + backward\n")
    out.append("`out = estimator.transport(e, q)`, then `torch.autograd.grad(out, e, g)`; e, q, g are (N, D) "
               "float32. Ratio vs the STE measured in the same rounds (for `ste` itself it is an A/A check of "
               "the noise).\n")
    rows = []
    for info in sorted(a, key=lambda i: (i["N"], i["D"], i["estimator"])):
        before = run.ratio(info, "rotation (before)")
        rows.append([info["N"], info["D"], info["estimator"], fmt_pair(run.stats(info, info["subject"])),
                     fmt_pair(run.stats(info, "ste")), fmt_ratio(run.ratio(info, "ste")),
                     fmt_ratio(run.ratio(info, "ste", "wall")),
                     fmt_ratio(run.variant_ratio(info, "rotation (eager)", "ste")),
                     fmt_ratio(run.variant_ratio(info, "rotation (compiled)", "ste")),
                     f"{fmt_pair(run.stats(info, 'rotation (before)'))} (after/before {fmt_ratio(before)})"
                     if before else ""])
    out.append("The estimator column runs in the default mode (`auto`: compiled from N·D ≥ 2²¹ in float32, "
               "estimators/fused.py); for `rotation` the same rounds also time it with the mode forced: eager "
               "(`off`) and compiled (`on`: torch.compile).\n")
    out.append(table(["N", "D", "estimator", "time min / median", "STE min / median", "ratio vs STE",
                      "ratio vs STE (wall)", "rotation eager / STE", "rotation compiled / STE", "rotation before"],
                     rows) + "\n")
    alone = {info["D"]: run.ratio(info, "ste") for info in a
             if info["estimator"] == "rotation" and info["N"] == 65536 and info["D"] in (32, 256)}
    if alone:
        ok = all(r["min"] <= 1.5 for r in alone.values())
        verdicts["alone"] = (", ".join(f"D={d}: {r['min']:.2f} (median {r['median']:.2f})"
                                       for d, r in sorted(alone.items())) + " (default mode: compiled)", ok)

    # --- b
    bq, br = run.section("b-quantizer"), run.section("b-rotation")
    out.append("## b. Against vector-quantize-pytorch\n")
    if bq or br:
        out.append("Whole quantizer (forward + backward, EMA decay 0.8 in both, euclidean lookup, same K, training "
                   "mode); subject: our VectorQuantizer with the rotation estimator.\n")
        rows = []
        for info in bq:
            for variant in info["variants"]:
                r = run.ratio(info, variant) if variant != info["subject"] else None
                rows.append([info["N"], info["D"], info["K"], variant, fmt_pair(run.stats(info, variant)),
                             fmt_ratio(r) if r else "(subject)"])
        out.append(table(["N", "D", "K", "variant", "time min / median", "ours rotation / variant"], rows) + "\n")
        rows = []
        for info in br:
            for variant in info["variants"]:
                r = run.ratio(info, variant) if variant != info["subject"] else None
                rows.append([info["N"], info["D"], variant, fmt_pair(run.stats(info, variant)),
                             fmt_ratio(r) if r else "(subject)"])
        if rows:
            out.append(f"Rotation alone: our estimator against `{br[0].get('their_function')}`, forward + "
                       "backward, same inputs.\n")
            out.append(table(["N", "D", "variant", "time min / median", "ours rotation / variant"], rows) + "\n")
        vqp = [(f"rotation alone D={i['D']}", run.ratio(i, o)) for i in br for o in i["variants"]
               if o.startswith("vqp")]
        vqp += [(f"quantizer N={i['N']} D={i['D']}", run.ratio(i, "vqp rotation_trick=True")) for i in bq]
        vqp = [(n, r) for n, r in vqp if r]
        if vqp:
            verdicts["vqp"] = ("; ".join(f"{n}: {r['min']:.2f}" for n, r in vqp), all(r["min"] <= 0.5 for _, r in vqp))
    else:
        out.append("Not run (vector-quantize-pytorch not installed: `pip install vector-quantize-pytorch`).\n")

    # --- c
    c = run.section("c")
    out.append("## c. Nearest-code search, N = 65536\n")
    out.append("`models.code_search.nearest_code` (chunked, reused score buffer, chunk rows picked from the shapes) "
               "against `torch.cdist(e, C).argmin(-1)` and the naive broadcast (only where N·K·D·4 ≤ 2 GiB). "
               "Peak memory measured on the first call of each method; analytic = its largest temporary.\n")
    rows = []
    worst = None
    bounded = []
    for info in sorted(c, key=lambda i: (i["K"], i["D"])):
        peaks, analytic = info["peak_bytes"], info["analytic_bytes"]
        r_cd = run.ratio(info, "cdist+argmin")
        worst = r_cd if worst is None or (r_cd and r_cd["min"] > worst["min"]) else worst
        naive = run.stats(info, "naive broadcast")
        rows.append([
            info["K"], info["D"], info["chunk_rows"], fmt_pair(run.stats(info, "chunked")),
            fmt_pair(run.stats(info, "cdist+argmin")), fmt_ratio(r_cd),
            fmt_pair(naive) if naive else f"skipped ({info['naive_skipped']})",
            f"{fmt_pair(run.stats(info, 'chunked (before)'))} ({fmt_ratio(run.ratio(info, 'chunked (before)'))})"
            if run.stats(info, "chunked (before)") else "not run (D > 32, K > 1024: time budget)",
            " / ".join(fmt_bytes(peaks.get(m)) for m in SEARCH_METHODS),
            " / ".join(fmt_bytes(analytic.get(m)) for m in SEARCH_METHODS),
        ])
        if info["K"] == 16384:
            limit = analytic["chunked"] + info["output_bytes"] + 2 * info["K"] * 4 * max(1, info["D"]) + 2**20
            bounded.append(peaks["chunked"] <= limit)
    out.append(table(["K", "D", "chunk rows", "chunked", "cdist+argmin", "chunked / cdist", "naive broadcast",
                      "chunked before (after/before)",
                      "peak: chunked / before / cdist / naive", "analytic: chunked / before / cdist / naive"], rows)
               + "\n")
    if c:
        agree = min(min(i["agreement_with_cdist"].values()) for i in c)
        out.append(f"All methods return the same indices as cdist+argmin on ≥ {agree:.4%} of the tokens "
                   "(differences only at float ties).\n")
        ratios = [run.ratio(i, "cdist+argmin") for i in c]
        bound_text = "not measured" if not bounded else ("yes" if all(bounded) else "no")
        verdicts["search"] = (
            f"worst chunked/cdist {max(r['min'] for r in ratios):.2f} (min/min), "
            f"{max(r['median'] for r in ratios):.2f} (median/median); peak at K=16384 within the chunk "
            f"(+ output and codebook): {bound_text}",
            all(r["min"] <= 1.10 for r in ratios) and (all(bounded) if bounded else None))

    # --- d
    d = run.section("d")
    out.append("## d. Peak memory, rotation vs STE, forward + backward, N = 65536, D = 256\n")
    for info in d:
        peaks = info["peak_bytes"]
        rows = [[name, fmt_bytes(peaks[name]), f"{peaks[name] / info['nd_bytes']:.2f}"] for name in peaks]
        out.append(table(["estimator", "peak (measured)", "in units of N·D·4 bytes"], rows) + "\n")
        out.append(f"rotation − STE = {info['rotation_minus_ste_in_nd']:.2f} N·D·4 bytes: O(N·D) (the rotation's "
                   "forward returns q without a copy; its backward allocates only the (N, D) gradient and "
                   "(N, 1) per-token scalars). Time, same rounds: rotation "
                   f"{fmt_pair(run.stats(info, 'rotation'))}, STE {fmt_pair(run.stats(info, 'ste'))}, ratio "
                   f"{fmt_ratio(run.ratio(info, 'ste'))}.\n")
        rows = [[n, fmt_bytes(v["peak_bytes"]), fmt_bytes(v["peak_bytes"] / int(n)), fmt_s(v["seconds"]),
                 f"{v['max_abs_diff_vs_closed_form']:.1e}"] for n, v in info["explicit"].items()]
        out.append("Counter-example, the explicit D×D form (R built per token, λ·R·e with R detached), measured at "
                   "small N:\n")
        out.append(table(["N", "peak (measured)", "per token", "time (one fwd+bwd)", "max abs diff vs closed form"],
                         rows) + "\n")
        out.append(f"Extrapolated ({info['explicit_extrapolation']}) to N = {info['N']}: peak ≈ "
                   f"**{fmt_bytes(info['explicit_extrapolated_peak_bytes'])}** and ≈ "
                   f"{fmt_s(info['explicit_extrapolated_seconds'])} per step, against "
                   f"{fmt_bytes(peaks['rotation'])} for the closed form.\n")

    # --- e
    out.append("## e. Training step and harness overhead\n")
    for info in run.section("e-step"):
        r = run.ratio(info, "ste")
        out.append(f"One training step of the VQ-VAE `cpu` preset (batch {info['batch']}, 3×32×32; "
                   f"{info['preset']['num_codes']} codes of dim {info['preset']['latent_dim']}): rotation "
                   f"{fmt_pair(run.stats(info, 'rotation'))}, STE {fmt_pair(run.stats(info, 'ste'))}; "
                   f"rotation/STE **{fmt_ratio(r)}** (wall clock {fmt_ratio(run.ratio(info, 'ste', 'wall'))}).\n")
        verdicts["step"] = (f"{r['min']:.3f} (median {r['median']:.3f})", r["min"] <= 1.05)
    for info in run.section("e-overhead"):
        s, l = info["steps_short"], info["steps_long"]
        rows = []
        per_clock = {}
        for clk in ("cpu", "wall"):
            st = {v: run.stats(info, v, clk) for v in info["variants"]}
            tl, bl = st[f"train_run {l} steps"], st[f"bare loop {l} steps"]
            ts, bs = st[f"train_run {s} steps"], st[f"bare loop {s} steps"]
            whole = tl["min"] / bl["min"] - 1
            per_step_h = (tl["min"] - ts["min"]) / (l - s)
            per_step_b = (bl["min"] - bs["min"]) / (l - s)
            per_step = per_step_h / per_step_b - 1 if per_step_b > 0 else float("nan")
            fixed = (tl["min"] - bl["min"]) - l * (per_step_h - per_step_b)
            times = info["times"][clk]
            per_round = [((th - tsh) / (tb - tsb) - 1) for th, tsh, tb, tsb in zip(
                times[f"train_run {l} steps"], times[f"train_run {s} steps"], times[f"bare loop {l} steps"],
                times[f"bare loop {s} steps"]) if tb > tsb]
            paired = statistics.median(per_round) if per_round else float("nan")
            per_clock[clk] = (whole, paired, fixed)
            rows.append([clk, fmt_pair(tl), fmt_pair(bl), fmt_pair(ts), fmt_pair(bs), f"{whole:+.1%}",
                         f"{fmt_s(per_step_h)} vs {fmt_s(per_step_b)} ({per_step:+.1%})",
                         f"{paired:+.1%} ({len(per_round)} rounds)", fmt_s(fixed)])
        out.append(f"Harness overhead: `harness.train.train_run` on a tiny resolved config (VQ-VAE cpu preset, "
                   f"batch {info['batch']}, no diagnostics, 1 validation batch) against a bare loop of "
                   "`training_step` on the same batches (training set + model + optimisers + steps only). Two "
                   f"lengths, {s} and {l} steps: the per-step overhead is the slope (DataLoader, "
                   "sampler, scheduler, logging per step), the fixed cost the intercept (validation set, final "
                   "evaluation, checkpoint: once per run, whatever its length); the whole-run overhead of the "
                   f"{l}-step run contains both. The slope from the min times is a difference of two noisy "
                   "minima; the verdict uses the median over rounds of each round's own slope ratio (the four "
                   "variants of a round run back to back).\n")
        out.append(table(["clock", f"train_run {l}", f"bare {l}", f"train_run {s}", f"bare {s}",
                          f"whole-run overhead ({l} steps)", "per step from min times",
                          "per step, median of rounds", "fixed cost per run"], rows) + "\n")
        whole, per_step, fixed = per_clock[run.clock]
        verdicts["overhead"] = (f"per step {per_step:+.1%} (median of rounds, {clock_name}; wall "
                                f"{per_clock['wall'][1]:+.1%}); "
                                f"plus a fixed {fmt_s(fixed)} per run, {whole:+.1%} of this {l}-step run in all",
                                per_step <= 0.05)
    if not run.section("e-overhead"):
        out.append("Harness overhead: not measured in this run (skipped; see the pytest output).\n")

    # --- f
    out.append("## f. run-suite --jobs 2 vs --jobs 1 (4 short runs)\n")
    for info in run.section("f"):
        r = run.ratio(info, "jobs 1", "wall")
        out.append(f"4 runs (VQ-VAE cpu preset, STE and rotation × 2 seeds, {info.get('steps')} steps of batch "
                   f"{info.get('batch')}), each call a fresh process running `harness.cli.run_suite_main` (what "
                   f"the `run-suite` command runs) into a fresh results directory, {info['cores']} cores: "
                   f"--jobs 2 {fmt_pair(run.stats(info, 'jobs 2', 'wall'))}, --jobs 1 "
                   f"{fmt_pair(run.stats(info, 'jobs 1', 'wall'))} (wall clock); ratio **{fmt_ratio(r)}**. "
                   f"--jobs 1 runs the 4 runs in that process with {info.get('jobs1_threads')} torch thread(s) "
                   f"(the benchmarks' setting), --jobs 2 starts a pool of 2 processes with {info.get('jobs2_threads')} "
                   "thread(s) each before importing torch itself (harness/executors.py: the workers are forked "
                   "from a forkserver that imports torch and the harness once). Two processes can only be faster "
                   "than one if two cores are free: see the load average above.\n")
        spans = info.get("runs_span")
        if spans and spans.get("jobs 1") and spans.get("jobs 2"):
            span1, span2 = min(spans["jobs 1"]), min(spans["jobs 2"])
            total1, total2 = run.stats(info, "jobs 1", "wall")["min"], run.stats(info, "jobs 2", "wall")["min"]
            out.append(f"From the first run's start to the last run's end (the records' timestamps, 1 s resolution) "
                       f"--jobs 2 took {span2:.0f} s and --jobs 1 {span1:.0f} s, ratio **{span2 / span1:.2f}**: the "
                       "runs themselves. The rest of each call, starting Python, importing torch and the harness, "
                       "loading the suite and writing the report, is paid once in either mode "
                       f"(--jobs 2 {total2 - span2:.0f} s, --jobs 1 {total1 - span1:.0f} s), and each pool worker "
                       "also pays its first run's photo loading and first steps (in the span).\n")
        verdicts["jobs"] = (f"{r['min']:.2f} (median {r['median']:.2f}), wall clock", r["min"] <= 0.65)
    if not run.section("f"):
        out.append("Not measured in this run (skipped; see the pytest output).\n")

    # --- g (benchmarks/data_report.py: loading and streamed fidelity, issue-sized targets of their own)
    if any(run.section(name) for name in ("g-decode", "g-index", "g-fidelity")):
        from benchmarks.data_report import render_data_section

        out.append(render_data_section(run)[0])

    # targets (placed after the machine section)
    rows = [[TARGETS_TEXT[key], verdicts[key][0] if key in verdicts else "not measured",
             holds(verdicts[key][1] if key in verdicts else None)] for key in TARGETS_TEXT]
    targets = ["## Targets\n",
               f"Judged on min/min ratios ({clock_name} unless stated): the least-disturbed rounds.\n",
               table(["target", "measured", "verdict"], rows) + "\n"]
    notes = []
    alone_d32 = next((i for i in a if i["estimator"] == "rotation" and i["N"] == 65536 and i["D"] == 32), None)
    step = next(iter(run.section("e-step")), None)
    step_ratio = run.ratio(step, "ste") if step else None
    if step_ratio and step_ratio["min"] > 1.0:
        verdict = "does not hold" if step_ratio["min"] > 1.05 else "holds"
        small = next((i for i in a if i["estimator"] == "rotation" and i["N"] == 4096 and i["D"] == 32), None)
        share = (f" (section a: {fmt_s(run.stats(small, 'rotation')['min'])} for 4096 tokens of dimension 32, "
                 f"against {fmt_s(run.stats(step, 'ste')['min'])} for the step)" if small else "")
        notes.append(
            f"* Training step ({step_ratio['min']:.3f}, median {step_ratio['median']:.3f}, {verdict}): the "
            f"estimator is a small share of a step of this preset{share}, so this ratio is mostly the spread "
            "between two equal steps; look at min/min and median/median together.")
    alone_ratio = run.ratio(alone_d32, "ste")["min"] if alone_d32 else None
    if alone_ratio is not None and alone_ratio > 0.9 * 1.5:
        eager = run.variant_ratio(alone_d32, "rotation (eager)", "ste")
        compiled = run.variant_ratio(alone_d32, "rotation (compiled)", "ste")
        verdict = "does not hold" if alone_ratio > 1.5 else "holds, by less than 10%"
        notes.append(
            f"* Estimator alone at D = 32 ({alone_ratio:.2f}, {verdict}): the STE is two element-wise passes "
            "(e + (q − e)) and its backward is free. The rotation's backward needs five per-token reductions "
            "(‖e‖, ‖q‖, eᵀq, eᵀg, qᵀg), scalar arithmetic per token and a three-input combination "
            f"s·g + α·e + β·q: eager PyTorch makes each its own pass ({fmt_ratio(eager)} × the STE here), "
            f"torch.compile two loops with a horizontal sum per row and product ({fmt_ratio(compiled)}).")
    if "jobs" in verdicts and verdicts["jobs"][1] is False:
        notes.append(
            "* --jobs: each call is a fresh process, and the parts that do not run in parallel (starting Python, "
            "importing torch and the harness, loading the suite, writing the report; section f splits them out) "
            "plus each worker's own start weigh heavily against four runs of a few seconds each. Two processes "
            "can also only beat one when a second core is free (see the load average). Longer runs shift the "
            "ratio towards the runs' own ratio.")
    if notes:
        targets += ["Targets that do not hold, or hold by less than 10%:\n", "\n".join(notes) + "\n"]
    index = next(i for i, block in enumerate(out) if block.startswith("## How these numbers"))
    out[index:index] = targets
    return "\n".join(out), {k: v[1] for k, v in verdicts.items()}


def gpu_section(device_out: Path) -> str:
    cuda_file = ROOT / "BENCHMARKS_CUDA.md"
    if cuda_file.exists():
        first = cuda_file.read_text().splitlines()[0].lstrip("# ")
        return f"## GPU\n\nSee [BENCHMARKS_CUDA.md](BENCHMARKS_CUDA.md) ({first}).\n"
    return ("## GPU\n\nNot run: this machine has no CUDA device (torch.cuda.is_available() is False). On a GPU "
            "machine, `python -m benchmarks.report --device cuda` runs the same benchmarks on CUDA under "
            "bfloat16 autocast (the quantizer and estimator arithmetic stay float32) and writes "
            "BENCHMARKS_CUDA.md, whose title names the card; the harness-overhead and --jobs benchmarks are "
            "CPU-only.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the benchmarks (default: 1 on the CPU, see BENCHMARKS.md; 0: "
                             "torch's default)")
    parser.add_argument("--max-time", type=float, default=0.5, help="--benchmark-max-time per benchmark (s)")
    parser.add_argument("--min-rounds", type=int, default=5, help="--benchmark-min-rounds")
    parser.add_argument("-k", dest="select", help="pytest -k expression (a subset of the benchmarks)")
    parser.add_argument("--out", help="Markdown file (default: BENCHMARKS.md, or BENCHMARKS_CUDA.md on cuda)")
    parser.add_argument("--json", help="keep the pytest-benchmark JSON here")
    parser.add_argument("--from-json", help="render this saved JSON instead of running the benchmarks")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available() and not args.from_json:
        print("benchmarks.report: CUDA is not available here (torch.cuda.is_available() is False); the GPU "
              "benchmarks were skipped and nothing was written. Run `python -m benchmarks.report --device cuda` "
              "on a machine with a CUDA device.")
        return 0
    threads = args.threads if args.threads is not None else (1 if args.device == "cpu" else 0)
    out_path = Path(args.out) if args.out else ROOT / ("BENCHMARKS.md" if args.device == "cpu" else "BENCHMARKS_CUDA.md")

    from benchmarks._common import machine_info

    machine = machine_info(torch.device(args.device))
    machine["load_before"] = ", ".join(f"{x:.2f}" for x in (machine.get("load_average") or []))
    command = "python -m benchmarks.report" + (" --device cuda" if args.device == "cuda" else "")
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        exit_code = data.get("_exit_code", 0)
        machine.update(data.get("_machine", {}))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            json_path = Path(args.json) if args.json else Path(tmp) / "benchmarks.json"
            exit_code = run_benchmarks(json_path, args.device, threads, args.max_time, args.min_rounds,
                                       args.select)
            if not json_path.exists():
                print(f"benchmarks.report: pytest wrote no JSON (exit code {exit_code})", file=sys.stderr)
                return exit_code or 1
            data = json.loads(json_path.read_text())
            machine["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            data["_exit_code"] = exit_code
            machine["malloc"] = ", ".join(f"{k}={os.environ.get(k, v)}" for k, v in MALLOC_SETTINGS.items())
            data["_machine"] = {k: machine[k] for k in ("load_before", "load_after", "malloc") if k in machine}
            if args.json:
                json_path.write_text(json.dumps(data))
    text, verdicts = render(data, machine, args.device, threads, command, exit_code)
    if args.device == "cpu":
        text += "\n" + gpu_section(out_path)
    out_path.write_text(text)
    print(f"wrote {out_path}")
    for key, ok in verdicts.items():
        print(f"  {TARGETS_TEXT[key]}: {'n/a' if ok is None else 'holds' if ok else 'does not hold'}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
