"""Section g of BENCHMARKS.md (benchmarks/bench_data.py): `render_data_section(run)` turns the pytest-benchmark
results into Markdown, with `benchmarks.report`'s formatting and clock. `python -m benchmarks.data_report
JSON [BENCHMARKS.md]` renders a saved run of bench_data.py alone and puts the section into the file, in place
of its previous version or before "## GPU".
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
    for info in sorted(run.section("g-decode"), key=lambda i: -i["size"]):
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
    return ([table(header, rows)] if rows else []), ok


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
        streamed = sorted(n for variant, n in runs if variant == "streamed")
        if len(streamed) >= 2:
            small, large = runs[("streamed", streamed[0])], runs[("streamed", streamed[-1])]
            ratio = large["peak_bytes"] / max(small["peak_bytes"], 1)
            ok = ratio <= FLAT_TOLERANCE
            out.append(f"\nStreamed: the peak at {streamed[-1]:,} images is {ratio:.2f}× the peak at "
                       f"{streamed[0]:,} (flat means ≤ {FLAT_TOLERANCE}); the code before grows with every image it "
                       "keeps (originals and reconstructions as float32 lists, their concatenations and uint8 "
                       "copies: about 4 copies of the images).")
    return out, ok


def render_data_section(run: Run) -> tuple[str, dict]:
    """The Markdown of section g and its verdicts ({"decode": bool | None, "fidelity": bool | None})."""
    out = [f"{HEADING}\n",
           "Measured in the same run as the code before it (benchmarks/_baseline_data.py). Items per second are "
           "those of one process with one torch thread, as one DataLoader worker runs; a run with W workers "
           "loads about W times as many.\n",
           "### Decoding: image_folder items per second per worker\n",
           "JPEGs of ImageNet's typical size cut from the shipped photographs (quality 90). At side 256 the "
           "short side (375) is under twice the output, so the JPEG is decoded at full scale (libjpeg-turbo) "
           "and the gain is the uint8 resize and crop; at 128 it is decoded at 1/2 scale (draft).\n"]
    decode, decode_ok = _decode(run)
    out += decode
    out.append("\n### File index, 100,000 files\n")
    out += _index(run)
    out.append("\n### r-FID peak host memory\n")
    out.append("Each measurement in a fresh process: a blur \"model\" on synthetic 256×256 images, stand-in "
               "Inception weights (random, torch-fidelity's architecture, loaded and checked as real ones) and, "
               "in both variants alike, the Inception forward replaced by a fixed projection with the same "
               "outputs (the real one takes about a second per image on this CPU; its activations are per "
               "batch, the same for any number of images). Peak = resident set size sampled every 2 ms, less "
               "the size before the call.\n")
    fidelity, fidelity_ok = _fidelity(run)
    out += fidelity
    verdicts = {"decode": decode_ok, "fidelity": fidelity_ok}
    lines = [f"* image_folder at 256, now / before ≥ {DECODE_TARGET}× items/s: "
             f"{'n/a' if decode_ok is None else 'holds' if decode_ok else 'does not hold'}",
             f"* r-FID peak host memory flat in the number of images: "
             f"{'n/a' if fidelity_ok is None else 'holds' if fidelity_ok else 'does not hold'}"]
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

    data = json.loads(Path(argv[0]).read_text())
    threads = next((b["extra_info"].get("threads") for b in data.get("benchmarks", [])
                    if "threads" in b.get("extra_info", {})), None)
    section, _ = render_data_section(Run(data, "cpu" if threads == 1 else "wall"))
    target = Path(argv[1]) if len(argv) > 1 else ROOT / "BENCHMARKS.md"
    target.write_text(insert_section(target.read_text(), section))
    print(f"wrote section g into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
