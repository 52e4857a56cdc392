"""The same validation images reconstructed by each approach, so differences can be seen, not only read.

Each finished run of an image or video family leaves `reconstructions.png` in its folder (harness/
run_logging.py: its first validation images above their reconstructions at the end of training). Per block
of the tables, `plot_reconstructions` shows the images once, then the reconstruction of each approach's
first seed, one row per approach: `reconstructions.png` (and .pdf) in the suite's folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import store
from ..run_logging import RECONSTRUCTIONS
from ..status import RunStatus
from .plots import pyplot, save_figure
from .tables import Block, Table

STEM = "reconstructions"
#: make_grid's padding in run_logging.image_grid (pixels): the grid's two rows are split along it.
PADDING = 2


def first_seed_pictures(suite_directory: Path, block: Block) -> dict[str, Path]:
    """{approach: reconstructions.png of its finished run with the lowest seed} for one block."""
    finished = block.runs[block.runs["status"] == RunStatus.FINISHED].sort_values(["_seed", "run_id"],
                                                                                   na_position="last")
    pictures = {}
    for _, run in finished.iterrows():
        path = store.run_dir(suite_directory.parent, suite_directory.name, run["run_id"]) / RECONSTRUCTIONS
        if run["_approach"] not in pictures and path.exists():
            pictures[run["_approach"]] = path
    return pictures


def _halves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the originals' row, the reconstructions' row) of a run's picture."""
    from PIL import Image

    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    row = (pixels.shape[0] - PADDING) // 2  # one row of pictures and the padding above it
    return pixels[:row + PADDING], pixels[row:]


def plot_reconstructions(suite_directory: Path, tables: list[Table]) -> list[Path]:
    """One panel per block: the validation images, then each approach's reconstruction (first seed)."""
    panels = []
    for table in tables:
        for block in table.blocks:
            pictures = first_seed_pictures(Path(suite_directory), block)
            ours = [r.approach for r in block.rows if r.kind == "ours" and r.approach in pictures]
            if ours:
                panels.append((block, [(a, pictures[a]) for a in ours]))
    if not panels:
        return []
    plt = pyplot()
    rows = sum(len(p) + 1 for _, p in panels)
    fig, axes = plt.subplots(rows, 1, figsize=(8.0, 1.1 * rows), squeeze=False)
    index = 0
    for block, pictures in panels:
        originals = _halves(pictures[0][1])[0]
        shown = [(f"validation images — {block.short}", originals)]
        shown += [(approach, _halves(path)[1]) for approach, path in pictures]
        for title, pixels in shown:
            ax = axes[index][0]
            ax.imshow(pixels, interpolation="nearest")
            ax.set_title(title, fontsize=8, loc="left")
            ax.axis("off")
            index += 1
    fig.tight_layout()
    return save_figure(fig, suite_directory, STEM)


def reconstruction_lines(paths: list[Path], drawn: bool, images: bool) -> list[str]:
    """report.md's section: the figure, or why there is none (no section when no run reads a dataset)."""
    lines = ["## Reconstructions", ""]
    if not paths and not images:
        return []
    png = [p for p in paths if p.suffix == ".png"]
    if png:
        return lines + ["The same validation images (top of each panel) reconstructed at the end of training by "
                        "each approach's first seed.", "", f"![{STEM}]({png[0].name})", ""]
    if not drawn:
        return lines + ["Not drawn (figures=False).", ""]
    return lines + [f"No run folder holds a `{RECONSTRUCTIONS}` (families without images, or runs recorded before "
                    "runs saved their reconstructions).", ""]
