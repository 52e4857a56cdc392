"""No tracked file points outside the repository: a user has only the repository, so documentation, code and
comments cite the paper's sections and tables instead of private notes or paths of a development machine."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Written in pieces so that this file does not match itself.
FORBIDDEN = ("DESIGN" + ".md", "NOTES" + ".md", "/" + "work/", "../" + "shared")


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout ({error}): no list of tracked files")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def outside_references(path: Path, root: Path = ROOT) -> list[str]:
    """"file:line: text" for every line of a text file that names something outside the repository."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):  # binary (figures, checkpoints) or gone from the work tree
        return []
    if "\0" in text:
        return []
    return [f"{path.relative_to(root)}:{number}: {line.strip()[:100]}"
            for number, line in enumerate(text.splitlines(), 1) if any(word in line for word in FORBIDDEN)]


def test_outside_references_are_found_with_file_and_line(tmp_path):
    note = tmp_path / "note.md"
    note.write_text("fine\nsee " + FORBIDDEN[1] + " §4\nalso /" + "work/main\n")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\0" + FORBIDDEN[0].encode())
    assert outside_references(note, tmp_path) == ["note.md:2: see " + FORBIDDEN[1] + " §4",
                                                  "note.md:3: also /" + "work/main"]
    assert outside_references(tmp_path / "figure.png", tmp_path) == []


def test_no_tracked_file_refers_outside_the_repository():
    found = [hit for path in tracked_files() for hit in outside_references(path)]
    assert not found, ("cite the paper's section or table instead of files outside the repository:\n"
                       + "\n".join(found))
