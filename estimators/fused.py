"""Fused backward passes: the transport estimators' closed forms compiled into one or two loops (performance only).

The eager closed forms (estimators/rotation_math.py) run each per-token reduction and each multiply-add as its
own pass over the (N, D) tensors. torch.compile of their "plain" form (out-of-place ops only) fuses the five
reductions into one loop over e, q, g and the combination into another. The arithmetic and the
degenerate-point fallbacks are the same in both forms; only the order of float32 roundings differs
(tests/test_fused_backward.py holds both to the float64 closed forms).

Mode, from ``estimators.set_fused_backward(mode)`` or the environment variable
``ROTATION_HARNESS_FUSED_BACKWARD`` (``set_fused_backward(None)`` returns to the variable):

* ``auto`` (default): compile float32 gradients of at least ``FUSED_MIN_ELEMENTS`` elements (N·D ≥ 2²¹, e.g.
  N = 65536 tokens of D = 32). Below it the eager form takes about a millisecond or less on a CPU core, and
  every CPU setting of the suites stays below it (tests/test_fused_backward.py), so their results never
  depend on a compiler. If compiling fails (no C++ compiler, no Triton), one warning and the eager form from
  then on.
* ``on``: compile every call, any size and dtype; a compile failure is raised. ``compiled`` is accepted as
  another name for ``on`` (the name of the torch.compile-only mode when there was a second fused form).
* ``off``: never fuse.

The first compiled call of each variant compiles (seconds; torch caches the result on disk for later
processes). Shapes are dynamic, so a new N or D does not recompile.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch

ENV = "ROTATION_HARNESS_FUSED_BACKWARD"
MODES = ("auto", "on", "off")
#: Other names accepted for a mode.
ALIASES = {"compiled": "on"}
#: In "auto", gradients with fewer elements than this stay eager.
FUSED_MIN_ELEMENTS = 1 << 21

_override: str | None = None
_compile_failure: str | None = None


def _validated(mode: str, where: str) -> str:
    normalized = mode.strip().lower()
    normalized = ALIASES.get(normalized, normalized)
    if normalized not in MODES:
        raise ValueError(f"{where}: {mode!r} is not a fused-backward mode; use one of {', '.join(MODES)}")
    return normalized


def set_fused_backward(mode: str | None) -> None:
    """Choose the mode for this process (auto, on, off); None returns to $ROTATION_HARNESS_FUSED_BACKWARD.

    Also forgets an earlier compile failure, so "auto" tries to compile again.
    """
    global _override, _compile_failure
    _override = None if mode is None else _validated(mode, "set_fused_backward")
    _compile_failure = None


def fused_backward_mode() -> str:
    """The mode in force: set_fused_backward's, else $ROTATION_HARNESS_FUSED_BACKWARD, else "auto"."""
    if _override is not None:
        return _override
    return _validated(os.environ.get(ENV, "auto"), f"environment variable {ENV}")


def compile_failure() -> str | None:
    """Why compiling failed in this process ("auto" then stays eager), or None."""
    return _compile_failure


def _fuses(mode: str, g: torch.Tensor) -> bool:
    if mode == "on":
        return True
    return (mode == "auto" and _compile_failure is None and g.dtype == torch.float32
            and g.numel() >= FUSED_MIN_ELEMENTS)


@functools.lru_cache(maxsize=None)
def _compiled(plain, static: tuple):
    """One compiled callable per function and constant arguments (scale, radial_removed), dynamic shapes.

    torch.compile keeps compiled graphs, and its limit of 8 recompilations, per Python code object; each
    variant gets a code object of its own (named after it) so variants never evict each other.
    """
    keywords = dict(static)

    def variant(g, e, q):
        return plain(g, e, q, **keywords)

    label = "_".join([plain.__name__.strip("_")] + [f"{k}_{v}" for k, v in static])
    names = {"co_name": label}
    if hasattr(variant.__code__, "co_qualname"):  # Python 3.11+
        names["co_qualname"] = label
    variant.__code__ = variant.__code__.replace(**names)
    return torch.compile(variant, dynamic=True)


def dispatch(plain, eager, g, e, q, **static):
    """The backward in the form the mode picks: compiled `plain` or `eager` (both `(g, e, q, **static)`).

    `plain` uses only out-of-place tensor ops (what torch.compile fuses best); `eager` is the same closed form
    written with in-place ops and reused buffers, which is what runs fastest without a compiler.
    """
    global _compile_failure
    mode = fused_backward_mode()
    if not _fuses(mode, g):
        return eager(g, e, q, **static)
    try:
        return _compiled(plain, tuple(sorted(static.items())))(g, e, q)
    except Exception as error:  # compile errors surface at the first call, as any exception type
        if mode != "auto":
            raise RuntimeError(f"fused backward ({ENV}={mode}) could not compile {plain.__name__}: {error}. "
                               f"Set {ENV}=off (or auto) to use the eager closed form.") from error
        _compile_failure = f"{type(error).__name__}: {error}"
        warnings.warn(f"fused backward disabled for this process, torch.compile failed ({_compile_failure}); "
                      f"using the eager closed form (set {ENV}=off to skip the attempt)", RuntimeWarning,
                      stacklevel=2)
        return eager(g, e, q, **static)
