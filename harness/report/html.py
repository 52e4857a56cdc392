"""report.html: the suite's report as one self-contained page to share (README "Reports").

The page is report.md rendered to HTML (its tables, figures, reconstructions, fidelity note, agreement
verdicts and metric definitions), the images embedded as data URIs, followed by each LaTeX table (its
PNG preview when pdflatex made one, and its source) and the suite's configuration. Nothing on the page
points to another file, so it can be mailed or attached as it is; like report.md it is a pure function of
the suite folder's files, so regenerating it gives the same bytes.

report.md is written by this package, so the renderer reads only what the package writes: headings,
paragraphs, `- ` lists, pipe tables, images on their own line, links, **bold** and `code`.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import yaml

from .. import store

REPORT_HTML = "report.html"

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; padding-bottom: .1em; margin-top: 1.8em; }
.scroll { overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td:not(:first-child) { white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: .6em 0; border: 1px solid #eee; }
img.pixels { image-rendering: pixelated; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 0.85em; }
.missing { color: #b00; font-weight: bold; }
"""

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _data_uri(path: Path) -> str:
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    return f"data:{kind.get(path.suffix.lower(), 'application/octet-stream')};base64," + \
        base64.b64encode(path.read_bytes()).decode("ascii")


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class _Renderer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.tex: list[str] = []  # the .tex files report.md links to, in order

    def image(self, alt: str, target: str) -> str:
        path = self.directory / target
        if not path.is_file():
            return f'<p class="missing">image not found: {html.escape(target)}</p>'
        pixels = ' class="pixels"' if path.stem == "reconstructions" else ""
        return f'<img{pixels} alt="{html.escape(alt)}" src="{_data_uri(path)}">'

    def link(self, text: str, target: str) -> str:
        """A link to a LaTeX table goes to its copy on this page; other files are named, not linked."""
        if target.endswith(".tex") and (self.directory / target).is_file():
            if target not in self.tex:
                self.tex.append(target)
            return f'<a href="#{_anchor(target)}">{html.escape(text)}</a>'
        return f"<code>{html.escape(text)}</code>"

    def inline(self, text: str) -> str:
        parts, last = [], 0
        for match in _LINK.finditer(text):
            parts.append(self._format(text[last:match.start()]))
            bang, label, target = match.groups()
            parts.append(self.image(label, target) if bang else self.link(label, target))
            last = match.end()
        parts.append(self._format(text[last:]))
        return "".join(parts)

    @staticmethod
    def _format(text: str) -> str:
        text = html.escape(text, quote=False)
        text = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", text)
        return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", text)

    def table(self, lines: list[str]) -> str:
        def cells(line: str) -> list[str]:
            return [c.strip() for c in line.strip().strip("|").split("|")]

        def row(values: list[str]) -> str:
            if len(values) > 1 and not any(values[1:]):  # a block's header row: across the table
                return f'<tr><td colspan="{len(values)}">{self.inline(values[0])}</td></tr>\n'
            return "<tr>" + "".join(f"<td>{self.inline(c)}</td>" for c in values) + "</tr>\n"

        head = "".join(f"<th>{self.inline(c)}</th>" for c in cells(lines[0]))
        body = "".join(row(cells(line)) for line in lines[2:])
        return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table></div>'

    def render(self, markdown: str) -> str:
        out: list[str] = []
        lines = markdown.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            if not line.strip():
                index += 1
            elif line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                title = line[level:].strip()
                out.append(f'<h{level} id="{_anchor(title)}">{self.inline(title)}</h{level}>')
                index += 1
            elif line.startswith("|"):
                block = []
                while index < len(lines) and lines[index].startswith("|"):
                    block.append(lines[index])
                    index += 1
                out.append(self.table(block))
            elif line.startswith("- "):
                items = []
                while index < len(lines) and lines[index].startswith("- "):
                    items.append(f"<li>{self.inline(lines[index][2:])}</li>")
                    index += 1
                out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            elif _LINK.fullmatch(line.strip()) and line.strip().startswith("!"):
                out.append(self.inline(line.strip()))
                index += 1
            else:
                paragraph = []
                while index < len(lines) and lines[index].strip() and not lines[index].startswith(("#", "|", "- ")):
                    paragraph.append(lines[index])
                    index += 1
                out.append(f"<p>{self.inline(' '.join(paragraph))}</p>")
        return "\n".join(out)


def _latex_section(renderer: _Renderer) -> list[str]:
    if not renderer.tex:
        return []
    out = ['<h2 id="latex-tables">LaTeX tables</h2>']
    for name in renderer.tex:
        path = renderer.directory / name
        out.append(f'<h3 id="{_anchor(name)}">{html.escape(name)}</h3>')
        preview = path.with_suffix(".png")
        if preview.is_file():
            out.append(renderer.image(f"{name} compiled with pdflatex", preview.name))
        else:
            out.append("<p>No compiled preview (pdflatex was not available when the report was written).</p>")
        out.append(f"<details><summary>LaTeX source</summary><pre>{html.escape(path.read_text())}</pre></details>")
    return out


def _configuration_section(suite) -> list[str]:
    out = ['<h2 id="suite-configuration">Suite configuration</h2>']
    if suite is None:
        return out + ["<p>The suite file was not loaded (a folder of results only).</p>"]
    text = yaml.safe_dump(suite.raw, sort_keys=False, allow_unicode=True, width=100)
    profile = f" with profile <code>{html.escape(suite.profile)}</code>" if suite.profile else ""
    return out + [f"<p>The suite file as loaded{profile}; each run's resolved configuration is in its record "
                  f"(<code>runs/&lt;run id&gt;/record.json</code>).</p>", f"<pre>{html.escape(text)}</pre>"]


def write_html(suite_directory: Path, markdown: str, suite=None) -> Path:
    """Render report.md's text, the LaTeX tables and the suite's configuration into report.html."""
    renderer = _Renderer(Path(suite_directory))
    body = renderer.render(markdown)
    title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), "Report")
    page = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", body,
            *_latex_section(renderer), *_configuration_section(suite), "</body>", "</html>"]
    path = Path(suite_directory) / REPORT_HTML
    store.atomic_write_text(path, "\n".join(page) + "\n")
    return path
