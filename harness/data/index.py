"""The file index of a dataset folder, built once and cached, so a run's start-up and a requeue do not rescan
the tree (ImageNet's 1.28 M files, paper §4.2, take tens of seconds to walk on a local disk, minutes on a
network filesystem).

The index lists the non-hidden files with the wanted suffixes under a base folder (hidden folders are not
entered), sorted as `sorted(pathlib.Path ...)` sorts them, together with every folder it walked and that
folder's modification time. Adding, removing or renaming a file changes the modification time of its folder,
so a cached index is used only while every walked folder still has the time it had; otherwise it is rebuilt.
A folder modified less than `RACY_SECONDS` before the walk started is not trusted (a change within the
filesystem's timestamp granularity could go unseen): such an index is rebuilt at the next load too.

Indexes of trees of at least `CACHE_MIN_FILES` files are cached (smaller trees are walked in milliseconds), one
zlib-compressed JSON file per (folder, suffixes) in `cache_dir()`: file names grouped by folder, so 1.28 M
ImageNet names take a few MB. The cache is written atomically (several runs may share it); where it cannot be
written, the index is simply rebuilt at each start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zlib
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "CACHE_MIN_FILES", "RACY_SECONDS", "cache_dir", "index_path", "indexed_files"]

#: Environment variable naming the cache folder (default: $XDG_CACHE_HOME/rotation-harness, else
#: ~/.cache/rotation-harness); the indexes go to its file-index/ subfolder.
CACHE_ENV = "ROTATION_HARNESS_CACHE"
CACHE_MIN_FILES = 1000
RACY_SECONDS = 2.0
_FORMAT = 1


def cache_dir() -> Path:
    """Where the file indexes are cached."""
    root = os.environ.get(CACHE_ENV, "").strip()
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache", "rotation-harness")
    return Path(root).expanduser() / "file-index"


def index_path(base: Path, suffixes: frozenset[str]) -> Path:
    """The cache file of the index of `base` (absolute) for `suffixes`."""
    key = json.dumps([_FORMAT, os.fspath(base), sorted(suffixes)])
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json.z"


def _walk(base: Path, suffixes: frozenset[str]) -> dict:
    """The index of `base`: walked folders (relative, with their mtime_ns) and the wanted files, sorted."""
    started = time.time_ns()
    folders: list[list] = []
    found: list[tuple[tuple[str, ...], int, str]] = []
    for folder, subfolders, files in os.walk(base):  # symlinked folders are not entered, as rglob did
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        relative = os.path.relpath(folder, base)
        parts = () if relative == "." else tuple(Path(relative).parts)
        folder_id = len(folders)
        folders.append(["/".join(parts), os.stat(folder).st_mtime_ns])
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes:
                found.append((parts, folder_id, name))
    found.sort(key=lambda entry: (*entry[0], entry[2]))  # pathlib's order: part by part
    return {"format": _FORMAT, "base": os.fspath(base), "suffixes": sorted(suffixes), "started_ns": started,
            "folders": folders, "file_folders": [f for _, f, _ in found], "file_names": [n for _, _, n in found]}


def _still_valid(index: dict, base: Path, suffixes: frozenset[str]) -> bool:
    """Whether a loaded index is of `base` and `suffixes` and every folder it walked is unchanged (and was
    not modified within `RACY_SECONDS` of the walk)."""
    if (index.get("format"), index.get("base"), index.get("suffixes")) != (_FORMAT, os.fspath(base),
                                                                          sorted(suffixes)):
        return False
    trusted_before = index["started_ns"] - int(RACY_SECONDS * 1e9)
    for relative, mtime in index["folders"]:
        if mtime >= trusted_before:
            return False
        try:
            if os.stat(base / relative).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True


def _load(path: Path) -> dict | None:
    try:
        return json.loads(zlib.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zlib.error) as error:
        logger.warning("file index cache %s is unreadable (%s); rebuilding it", path, error)
        return None


def _save(path: Path, index: dict) -> None:
    """Write atomically (a temporary file renamed over the old one); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(zlib.compress(json.dumps(index, separators=(",", ":")).encode(), 6))
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("cannot cache the file index in %s (%s); set %s to a writable folder to keep it",
                       path.parent, error, CACHE_ENV)


def indexed_files(base: Path, suffixes: frozenset[str]) -> list[Path]:
    """The non-hidden files under `base` (recursively, hidden folders skipped) whose lower-case suffix is in
    `suffixes`, sorted; from the cached index when it is still valid (see the module docstring)."""
    base = Path(os.path.abspath(Path(base).expanduser()))
    path = index_path(base, suffixes)
    index = _load(path)
    if index is not None and _still_valid(index, base, suffixes):
        logger.info("file index of %s: %d files (cached in %s)", base, len(index["file_names"]), path)
    else:
        started = time.perf_counter()
        index = _walk(base, suffixes)
        logger.info("file index of %s: %d files (walked in %.1f s)", base, len(index["file_names"]),
                    time.perf_counter() - started)
        if len(index["file_names"]) >= CACHE_MIN_FILES:
            _save(path, index)
    folders = [base / relative if relative else base for relative, _ in index["folders"]]
    return [folders[f] / name for f, name in zip(index["file_folders"], index["file_names"])]
