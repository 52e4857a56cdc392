"""report.html and the reconstructions of the suite report, on fake run folders (test_report.py's records,
plus a reconstructions.png per run): the page is self-contained, and opened in headless Chromium (Debian's
chromium package, installed by .ci/run) every table and image renders; a screenshot is taken."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from harness import report, store
from harness.report.html import REPORT_HTML
from harness.report.reconstructions import _halves
from harness.run_logging import RECONSTRUCTIONS
from harness.suite import load_suite
from test_report import SUITE, write_fake_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian: apt-get install chromium)")
#: 4 pictures of 6 px in a make_grid layout (2 px padding): two rows, originals above reconstructions
SIDE, PAD, COUNT = 6, 2, 4
#: appended to a copy of the page: what the browser rendered, written into the DOM for --dump-dom
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                                 width: i.getBoundingClientRect().width}));
  const tables = [...document.querySelectorAll("table")].map(t => ({rows: t.rows.length,
                                                                   height: t.getBoundingClientRect().height}));
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({images, tables});
  document.body.appendChild(probe);
});
</script>"""


def picture(seed: int, approach_shade: int) -> Image.Image:
    """A fake run's reconstructions.png: originals (shade 40·seed) above reconstructions (approach_shade)."""
    width, height = COUNT * (SIDE + PAD) + PAD, 2 * (SIDE + PAD) + PAD
    pixels = np.full((height, width, 3), 255, np.uint8)
    for column in range(COUNT):
        left = PAD + column * (SIDE + PAD)
        pixels[PAD:PAD + SIDE, left:left + SIDE] = 40 * seed
        pixels[2 * PAD + SIDE:2 * PAD + 2 * SIDE, left:left + SIDE] = approach_shade
    return Image.fromarray(pixels)


SHADE = {"ste": 100, "rotation": 150, "exact": 200}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    directory = tmp_path_factory.mktemp("html")
    path = directory / "fake_table1.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    suite = load_suite(path)
    out = directory / "results"
    write_fake_runs(out, suite)
    for spec in suite.runs:
        picture(spec.config.seed, SHADE[spec.config.estimator.name]).save(
            store.run_dir(out, spec.suite, spec.run_id) / RECONSTRUCTIONS)
    suite_dir = store.suite_dir(out, suite.name)
    result = report.write_suite_report(suite_dir, suite=suite)
    return {"dir": suite_dir, "files": result["files"], "html": (suite_dir / REPORT_HTML).read_text(),
            "md": (suite_dir / "report.md").read_text(), "suite": suite}


def test_halves_split_a_grid_along_its_padding(tmp_path):
    picture(1, 150).save(tmp_path / "grid.png")
    top, bottom = _halves(tmp_path / "grid.png")
    assert top.shape == bottom.shape == (SIDE + 2 * PAD, COUNT * (SIDE + PAD) + PAD, 3)
    assert set(np.unique(top)) == {40, 255} and set(np.unique(bottom)) == {150, 255}


def test_reconstructions_of_the_first_seed_per_approach(page):
    path = page["dir"] / "reconstructions.png"
    assert path in page["files"] and "![reconstructions](reconstructions.png)" in page["md"]
    assert "## Reconstructions" in page["md"]
    # 2 blocks × (validation images + 3 approaches); exact in the cosine block has seed 0 only: shown too
    from harness.report.reconstructions import first_seed_pictures

    tables = report.build_tables(store.load_results(page["dir"]), page["suite"])
    for block in tables[0].blocks:
        pictures = first_seed_pictures(page["dir"], block)
        assert sorted(pictures) == sorted(SHADE)
        for approach, run_picture in pictures.items():
            run = block.runs[block.runs["run_id"] == run_picture.parent.name].iloc[0]
            assert run["_seed"] == 0 and run["_approach"] == approach


def test_html_is_self_contained(page):
    html = page["html"]
    sources = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    links = re.findall(r'href="([^"]+)"', html)
    assert all(link.startswith("#") for link in links)
    ids = set(re.findall(r' id="([^"]+)"', html))
    assert {link[1:] for link in links} <= ids  # every in-page link has its target
    # everything report.md shows, plus the LaTeX previews and sources and the suite's configuration
    markdown_tables = sum(line.startswith("|---") for line in page["md"].splitlines())
    assert html.count("<table>") == markdown_tables and "image not found" not in html
    for heading in ("What ran", "Tables", "Figures", "Reconstructions", "Agreement with the paper",
                    "LaTeX tables", "Suite configuration"):
        assert f">{heading}</h" in html, heading
    assert "name: fake_table1" in html and r"\begin{tabular}" in html
    report.write_suite_report(page["dir"], suite=page["suite"])
    assert (page["dir"] / REPORT_HTML).read_text() == html  # regenerated byte-identically


@needs_chromium
def test_html_renders_in_chromium_with_a_screenshot(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page["html"].replace("</body>", PROBE + "\n</body>"))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=10000"]
    dom = subprocess.run(command + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert match, dom.stderr[-2000:]
    rendered = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    expected_images = len(re.findall(r"<img ", page["html"]))
    assert len(rendered["images"]) == expected_images >= 5  # figures, reconstructions, the LaTeX preview
    assert all(image["ok"] and image["width"] > 0 for image in rendered["images"]), rendered["images"]
    assert len(rendered["tables"]) == page["html"].count("<table>")
    assert all(table["rows"] >= 2 and table["height"] > 0 for table in rendered["tables"])

    shot = tmp_path / "report.png"
    subprocess.run(command + ["--window-size=1280,1600", f"--screenshot={shot}", (page["dir"] / REPORT_HTML).as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        gray = np.asarray(image.convert("L"))
    assert gray.min() < 50 and gray.max() > 200 and (gray < 128).mean() > 0.01  # text on a page, not blank
