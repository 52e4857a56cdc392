"""Each LaTeX table compiled as the paper would print it, checked for width and kept as a PNG preview.

`compile_table` wraps a table in a page of the ICLR single-column format the paper uses (5.5 in text width,
9 in text height, Times: the ICLR 2025 style file's geometry), runs pdflatex and returns what TeX reported:
overfull boxes (the table runs past the margin) and errors. `write_preview` renders the page with
pdftoppm and crops it to the table: `<stem>.png` beside `<stem>.tex`. pdflatex (Debian's texlive-latex-base,
-latex-recommended and -fonts-recommended) and pdftoppm (poppler-utils) are needed; without them the report
names what is missing and skips the previews.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The page the tables are checked on: the ICLR single-column format's text block.
PAGE = r"""\documentclass[10pt]{article}
\usepackage[letterpaper,textwidth=5.5in,textheight=9in]{geometry}
\usepackage{times}
\usepackage{booktabs}
\usepackage{graphicx}
\pagestyle{empty}
\begin{document}
\input{table}
\end{document}
"""
TOOLS = ("pdflatex", "pdftoppm")
#: Preview resolution (dots per inch) and the white margin left around the table (pixels).
DPI, MARGIN = 150, 12
_OVERFULL = re.compile(r"^(Overfull \\[hv]box .*)$", re.MULTILINE)
_ERROR = re.compile(r"^! (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Compiled:
    pdf: Path | None  # the page, None when pdflatex failed
    overfull: tuple  # TeX's "Overfull \hbox (12.3pt too wide) ..." lines
    errors: tuple  # TeX's "! ..." error lines


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def compile_table(tex: str, directory: Path) -> Compiled:
    """pdflatex on the table in an ICLR-sized page, in `directory`; fixed dates so the output repeats."""
    directory = Path(directory)
    (directory / "table.tex").write_text(tex)
    (directory / "page.tex").write_text(PAGE)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "page.tex"],
                            cwd=directory, env=env, capture_output=True, text=True, errors="replace", timeout=120)
    text = (directory / "page.log").read_text(errors="replace") if (directory / "page.log").exists() else result.stdout
    pdf = directory / "page.pdf"
    return Compiled(pdf=pdf if result.returncode == 0 and pdf.exists() else None,
                    overfull=tuple(_OVERFULL.findall(text)), errors=tuple(_ERROR.findall(text)))


def _crop(png: Path) -> None:
    """Crop the rendered page to the table and its caption, plus a white margin."""
    from PIL import Image, ImageChops

    with Image.open(png) as page:
        page = page.convert("RGB")
        box = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
        if box is not None:
            left, top, right, bottom = box
            page = page.crop((max(0, left - MARGIN), max(0, top - MARGIN), min(page.width, right + MARGIN),
                              min(page.height, bottom + MARGIN)))
        page.save(png, optimize=False)


def write_preview(tex_path: Path) -> tuple[Path | None, str | None]:
    """(`<stem>.png` beside the table, None) or (None, why not). A table wider than the text is still
    previewed, with a warning naming how much too wide."""
    tex_path = Path(tex_path)
    missing = missing_tools()
    if missing:
        return None, (f"LaTeX previews not made: {', '.join(missing)} not found (Debian: apt-get install "
                      "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils)")
    with tempfile.TemporaryDirectory(prefix="table-preview-") as scratch:
        compiled = compile_table(tex_path.read_text(), Path(scratch))
        if compiled.pdf is None:
            return None, f"{tex_path.name} does not compile with pdflatex: {'; '.join(compiled.errors) or 'see its log'}"
        for line in compiled.overfull:
            log.warning("%s: wider than the ICLR text width (5.5 in): %s", tex_path, line)
        png = tex_path.with_suffix(".png")
        subprocess.run(["pdftoppm", "-png", "-r", str(DPI), "-singlefile", str(compiled.pdf),
                        str(Path(scratch) / "page")], check=True, capture_output=True, timeout=120)
        page = Path(scratch) / "page.png"
        _crop(page)  # cropped in the scratch folder, then put in place atomically: two reports of one suite
        partial = png.with_name(f".{png.name}.{os.getpid()}.tmp")  # may write the same preview at once
        shutil.copyfile(page, partial)
        os.replace(partial, png)
    return png, None
