"""Section g of BENCHMARKS.md (benchmarks/bench_data.py): `render_data_section(run)` turns the pytest-benchmark
results into Markdown, with `benchmarks.report`'s formatting and clock. `python -m benchmarks.data_report
JSON [BENCHMARKS.md]` renders a saved run of bench_data.py alone and puts the section into the file, in place
of its previous version or before "## GPU"; `python -m benchmarks.data_report --run JSON [BENCHMARKS.md]` first
runs bench_data.py into JSON the way `benchmarks.report` runs every benchmark (one torch thread, its malloc
settings).
"""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.report import ROOT, Run, fmt_bytes, fmt_pair, fmt_ratio, fmt_s, table

HEADING = "## g. ImageNet-scale loading and streamed fidelity"
DECODE_TARGET = 3.0
FLAT_TOLERANCE = 1.25


def _decode(run: Run) -> tuple[list[str], bool | None]:
    rows, ok = [], None
    infos = sorted(run.section("g-decode"), key=lambda i: -i["size"])
    for info in infos:
        now, before = run.stats(info, "image_folder"), run.stats(info, "image_folder (before)")
        speedup = before["min"] / now["min"]
        if info["size"] == 256:
            ok = speedup >= DECODE_TARGET
        width, height = info["mean_source_size"]
        rows.append([info["size"], f"{width:.0f}×{height:.0f}", f"{info['items_per_round'] / now['min']:.0f}",
                     f"{info['items_per_round'] / before['min']:.0f}", f"**{speedup:.2f}×**",
                     fmt_ratio(run.ratio(info, "image_folder (before)")),
                     f"{info['mean_abs_difference_vs_before'] * 127.5:.2f}"])
    header = ["output side", "mean JPEG size", "items/s now", "items/s before", "speed-up (min)",
              "now/before time (min / median)", "mean |now − before| (levels of 255)"]
    out = [table(header, rows)] if rows else []
    profiled = [info for info in infos if "stages" in info]
    if profiled:
        out.append("\nWhere an item's time goes: process CPU time per item of each stage (its share of the whole "
                   f"item), on the same {profiled[0]['items_per_round']} files, each stage timed on its own, the "
                   "stages interleaved, min over the rounds. \"Dataset indexing\" is `dataset[i]` around its "
                   "reader.\n")
        out.append(table(["output side", "code", "file read + decode", "resize + crop", "float32 conversion",
                          "dataset indexing", "whole item"],
                         [row for info in profiled for row in _stage_rows(info)]))
    return out, ok


def _ms(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-4 else f"{seconds * 1e3:.2f} ms"


def _share(seconds: float, item: float, note: str = "") -> str:
    return f"{_ms(seconds)} ({seconds / item:.0%}{note})"


def _stage_rows(info: dict) -> list[list]:
    """The stage profile of one output side: a row for the code now and one for the code before."""
    now, before = info["stages"]["now"], info["stages"]["before"]
    read = f"; file read {_ms(now['file read'])}"
    return [[info["size"], "now", _share(now["file read + decode"], now["item"], read),
             _share(now["uint8 resize + crop"], now["item"]), _share(now["float32 conversion (crop)"], now["item"]),
             _share(now["dataset indexing"], now["item"]), f"**{_ms(now['item'])}**"],
            [info["size"], "before", _share(before["file read + decode (PIL)"], before["item"]),
             _share(before["float resize + crop"], before["item"]),
             _share(before["float32 conversion (full size)"], before["item"]), "–", f"**{_ms(before['item'])}**"]]


def _index(run: Run) -> list[str]:
    out = []
    for info in run.section("g-index"):
        rows = [[name, fmt_pair(run.stats(info, name))]
                for name in ("cached index", "index build (walk + cache write)", "walk (before)")]
        out.append(table(["listing", "time min / median"], rows))
        before, cached = run.stats(info, "walk (before)"), run.stats(info, "cached index")
        out.append(f"\n{info['files']:,} files in {info['folders']:,} folders; the cached index is "
                   f"{fmt_bytes(info['cache_bytes'])} on disk and loads **{before['min'] / cached['min']:.1f}×** "
                   "faster than the walk of the code before (which every start and requeue paid, on a network "
                   "file system many times over). Checking it stats only the folders.")
    return out


def _fidelity(run: Run) -> tuple[list[str], bool | None]:
    out, ok = [], None
    for info in run.section("g-fidelity"):
        runs = {(r["variant"], r["n"]): r for r in info["runs"]}
        rows = [[variant, f"{n:,}", fmt_bytes(r["peak_bytes"]), fmt_bytes(n * info["image_bytes"]), fmt_s(r["seconds"]),
                 f"{r['metrics']['r_fid']:.4f} / {r['metrics']['r_is']:.4f}"]
                for (variant, n), r in sorted(runs.items())]
        out.append(table(["code", "images", "peak host memory (RSS growth)", "one float32 copy of the images",
                          "time", "r-FID / r-IS"], rows))
        streamed, before = _peak_growth(runs, "streamed"), _peak_growth(runs, "before")
        if streamed:
            (small, large), ratio = streamed
            ok = ratio <= FLAT_TOLERANCE
            out.append(f"\nStreamed: the peak at {large:,} images is **{ratio:.2f}×** the peak at {small:,} (flat "
                       f"means ≤ {FLAT_TOLERANCE}). The code before grows with every image it keeps (originals and "
                       "reconstructions as float32 lists, their concatenations and uint8 copies: about 4 copies of "
                       "the images)" + (f": its peak at {before[0][1]:,} is {before[1]:.2f}× its peak at "
                                        f"{before[0][0]:,}" if before else "")
                       + ("" if ("before", large) in runs else
                          f"; at {large:,} images it would hold about {fmt_bytes(4 * large * info['image_bytes'])}, "
                          "so it is not run there") + ".")
    return out, ok


def _peak_growth(runs: dict, variant: str) -> tuple[tuple[int, int], float] | None:
    """((smallest N, largest N), peak at the largest / peak at the smallest) of `variant`'s runs."""
    sizes = sorted(n for v, n in runs if v == variant)
    if len(sizes) < 2:
        return None
    peaks = [runs[(variant, n)]["peak_bytes"] for n in (sizes[0], sizes[-1])]
    return (sizes[0], sizes[-1]), peaks[1] / max(peaks[0], 1)


def _load_line(run: Run) -> list[str]:
    """An italic line with the load average (1 min) seen during the section's benchmarks."""
    loads = [x for name in ("g-decode", "g-index", "g-fidelity") for info in run.section(name)
             for x in info.get("load_average", [])]
    if not loads:
        return []
    return [(f"*Load average (1 min) during these benchmarks: {min(loads):.1f} to {max(loads):.1f}; the "
             "ratios come from variants timed in the same rounds (process CPU time, min over the rounds), the "
             "memory from fresh processes.*\n")]


def render_data_section(run: Run) -> tuple[str, dict]:
    """The Markdown of section g and its verdicts ({"decode": bool | None, "fidelity": bool | None})."""
    out = [f"{HEADING}\n",
           "Measured in the same run as the code before it (benchmarks/_baseline_data.py). Items per second are "
           "those of one process with one torch thread, as one DataLoader worker runs; a run with W workers "
           "loads about W times as many.\n",
           *_load_line(run),
           "### Decoding: image_folder items per second per worker\n",
           "JPEGs of ImageNet's typical size cut from the shipped photographs (quality 90). At side 256 the "
           "short side (375) is under twice the output, so the JPEG is decoded at full scale (libjpeg-turbo "
           "through torchvision, the same pixels as PIL's) and the gain is everything after the decode: the "
           "resize and crop in uint8, channels-last, and float32 only for the crop; at 128 it is decoded at 1/2 "
           "scale (PIL draft).\n"]
    decode, decode_ok = _decode(run)
    out += decode
    out.append("\n### File index, 100,000 files\n")
    out += _index(run)
    out.append("\n### r-FID peak host memory\n")
    out.append("Each measurement in a fresh process: the run's `fidelity_for_run` (or the code before) on "
               "synthetic 256×256 images, a \"model\" that dims them, stand-in Inception weights (random, "
               "torch-fidelity's architecture, loaded and checked as real ones) and, in both variants alike, the "
               "Inception forward replaced by a fixed projection of a grid of pixels with the same outputs (the "
               "real one takes about a second per image on this CPU; its activations are per batch, the same for "
               "any number of images). Images, model and projection cost next to nothing, so the time is the "
               "measured code's: per batch, the uint8 conversions and the float64 feature statistics (a "
               "2048×2048 scatter matrix per set), and once, the Fréchet distance's 2048-dimension eigenvalue "
               "problem. Peak = resident set size sampled every 2 ms, less the size before the call.\n")
    fidelity, fidelity_ok = _fidelity(run)
    out += fidelity
    verdicts = {"decode": decode_ok, "fidelity": fidelity_ok}
    lines = [f"* image_folder at 256, now / before ≥ {DECODE_TARGET}× items/s: "
             f"{'n/a' if decode_ok is None else 'holds' if decode_ok else 'does not hold'}",
             f"* r-FID peak host memory flat in the number of images: "
             f"{'n/a' if fidelity_ok is None else 'holds' if fidelity_ok else 'does not hold'}"]
    if decode_ok is False:
        lines[0] += (": the full-scale decode, the floor of every exact pipeline here, is most of an item now (see "
                     "the profile). libjpeg-turbo's DCT-domain scaling at 6/8, the smallest scale keeping 375 "
                     "above 256, decodes slower than full scale and with another filter; the crop cannot be cut "
                     "before the resize with the same sampling geometry, because its edge falls between source "
                     "pixels and torch's resize takes no offset")
    out.append("\nTargets of this section:\n\n" + "\n".join(lines) + "\n")
    return "\n".join(out), verdicts


def insert_section(markdown: str, section: str) -> str:
    """`markdown` with section g replaced by `section`, or inserted before "## GPU" (else at the end)."""
    if HEADING in markdown:
        start = markdown.index(HEADING)
        following = markdown.find("\n## ", start + len(HEADING))
        return markdown[:start] + section + ("\n" + markdown[following + 1:] if following >= 0 else "")
    anchor = markdown.find("## GPU")
    return markdown + "\n" + section if anchor < 0 else markdown[:anchor] + section + "\n" + markdown[anchor:]


def main(argv: list[str]) -> int:
    import json

    from benchmarks.report import run_benchmarks

    run_first = argv[:1] == ["--run"]
    argv = argv[1:] if run_first else argv
    if not argv:
        print("usage: python -m benchmarks.data_report [--run] JSON [BENCHMARKS.md]", file=sys.stderr)
        return 2
    json_path = Path(argv[0])
    if run_first:
        exit_code = run_benchmarks(json_path, "cpu", 1, max_time=1.0, min_rounds=10, select="bench_data")
        if exit_code or not json_path.exists():
            print(f"benchmarks.data_report: bench_data.py failed (pytest exit code {exit_code})", file=sys.stderr)
            return exit_code or 1
    data = json.loads(json_path.read_text())
    threads = next((b["extra_info"].get("threads") for b in data.get("benchmarks", [])
                    if "threads" in b.get("extra_info", {})), None)
    section, _ = render_data_section(Run(data, "cpu" if threads == 1 else "wall"))
    target = Path(argv[1]) if len(argv) > 1 else ROOT / "BENCHMARKS.md"
    target.write_text(insert_section(target.read_text(), section))
    print(f"wrote section g into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
