"""The CPU kernel of the rotation family's backward (estimators/rotation_backward.c): build, cache, call.

torch.compile turns the closed form into separate loops for the reductions and for the output, each with a
horizontal sum per row and per product; at D = 32 that costs about twice the STE's forward and backward
(BENCHMARKS.md). The C kernel does the same arithmetic (the formulas of `_rotation_coefficients` in
rotation_math.py; the compiler may contract multiply-adds, so float32 roundings differ) in one pass over
memory, with the per-row sums of sixteen rows reduced together.

It is built on first use with the system's C compiler (``$CC``, else ``cc``), optimised for the CPU it runs
on, and kept in ``$ROTATION_HARNESS_CACHE_DIR`` (default ``~/.cache/rotation-harness``) under a name that
hashes the source, the compiler (path and ``--version``), the flags and the CPU, so a cluster whose nodes
share a home directory never loads a build made for another CPU. A build failure is kept for the process.
Large inputs are split over torch's intra-op threads. estimators/fused.py decides when it runs;
`build_failure()` says why it is not available.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("rotation_backward.c")
CACHE_ENV = "ROTATION_HARNESS_CACHE_DIR"
#: Tried in order; the portable set is used where the compiler does not know -march=native (Apple Clang).
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])
_COMMON_FLAGS = ["-std=gnu11", "-fno-math-errno", "-shared", "-fPIC"]
SCALES = {"norm_ratio": 0, "one": 1, "inverse_sq_distance": 2}
#: Rows per thread below which splitting the work over threads costs more than it saves.
MIN_ROWS_PER_THREAD = 8192


class KernelBuildError(RuntimeError):
    """The C kernel could not be compiled or loaded (the message has the compiler's output)."""


def cache_dir() -> Path:
    """Where built kernels are kept: $ROTATION_HARNESS_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rotation-harness"


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_identity() -> str:
    """Model name and feature flags of this CPU (what -march=native compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # macOS: the brand string tells Apple chips apart
        brand = _command_output(["sysctl", "-n", "machdep.cpu.brand_string", "machdep.cpu.features"])
        return f"{platform.machine()} {platform.processor()} {brand}"
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    """Compiles SOURCE into `target` atomically (a concurrent build of the same key is harmless)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *flags, *_COMMON_FLAGS, str(SOURCE), "-o", str(built), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelBuildError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
        os.replace(built, target)


def _build() -> ctypes.CDLL:
    """Compiles the kernel unless the cache has it for this source, compiler, flag set and CPU, and loads it."""
    compiler = os.environ.get("CC") or "cc"
    compiler_path = shutil.which(compiler)
    if compiler_path is None:
        raise KernelBuildError(f"no C compiler: {compiler!r} is not on PATH (set $CC)")
    identity = [SOURCE.read_bytes(), compiler_path.encode(), _command_output([compiler_path, "--version"]).encode(),
                _cpu_identity().encode()]
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join(identity + [" ".join(flags + _COMMON_FLAGS).encode()])).hexdigest()[:24]
        target = cache_dir() / f"rotation_backward-{key}.so"
        try:
            if not target.exists():
                _compile(compiler_path, flags, target)
            library = ctypes.CDLL(str(target))
        except (KernelBuildError, OSError) as error:
            errors.append(str(error))
            continue
        function = library.rotation_backward
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        function.argtypes = [pointer] * 5 + [size, size, ctypes.c_int, ctypes.c_int, ctypes.c_float,
                                              ctypes.c_float]
        function.restype = size
        library.built_with = " ".join([compiler, *flags])
        return library
    raise KernelBuildError("; ".join(errors))


@functools.lru_cache(maxsize=1)
def _built_once() -> ctypes.CDLL | KernelBuildError:
    """`_build()`'s library, or its error: either is kept for the process, so a failure is not retried."""
    try:
        return _build()
    except KernelBuildError as error:
        return error


def _library() -> ctypes.CDLL:
    """The built kernel; raises KernelBuildError if it cannot be built."""
    built = _built_once()
    if isinstance(built, KernelBuildError):
        raise KernelBuildError(str(built))
    return built


def build_failure() -> str | None:
    """Why the kernel cannot be used in this process (compiler missing or failing), or None if it builds."""
    try:
        _library()
    except KernelBuildError as error:
        return str(error)
    return None


def status() -> str:
    """One line for reports: how the kernel was built, or why it could not be."""
    failure = build_failure()
    return f"not built: {failure}" if failure else f"built with {_library().built_with}"


def applies(*tensors: torch.Tensor) -> bool:
    """The kernel handles float32 CPU tensors of one shape (any layout: they are made contiguous)."""
    first = tensors[0]
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.shape == first.shape for t in tensors)


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Threads for row ranges: as many as torch could use (each call uses torch.get_num_threads() of them)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="rotation-backward")


def rotation_backward(g, e, q, scale: str, radial_removed: bool, eps: float, near_opposite: float):
    """(s·Rᵀg, 1 + cos, number of tokens with 1 + cos < near_opposite) for float32 CPU tensors (..., D).

    Raises KernelBuildError if the kernel cannot be built. The ctypes call releases the GIL, so row ranges
    run in parallel on torch.get_num_threads() threads when there are enough rows.
    """
    function = _library().rotation_backward
    shape, d = g.shape, g.shape[-1]
    g, e, q = (t.contiguous().view(-1, d) for t in (g, e, q))
    n = g.shape[0]
    out = torch.empty_like(g)
    one_plus_cos = torch.empty(n, 1, dtype=g.dtype)
    parts = max(1, min(torch.get_num_threads(), n // MIN_ROWS_PER_THREAD))
    bounds = [n * i // parts for i in range(parts + 1)]

    def run(begin: int, end: int) -> int:
        offset = begin * d * g.element_size()  # in bytes
        return function(*(t.data_ptr() + offset for t in (g, e, q, out)),
                        one_plus_cos.data_ptr() + begin * one_plus_cos.element_size(),
                        end - begin, d, SCALES[scale], int(radial_removed), eps, near_opposite)

    if parts == 1:
        near = run(0, n)
    else:
        near = sum(_pool().map(run, bounds[:-1], bounds[1:]))
    return out.view(shape), one_plus_cos.view(*shape[:-1], 1), near
