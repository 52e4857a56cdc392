"""A run's checkpoint: tensors and plain containers only, loaded without running any code.

A checkpoint holds what resuming needs to end with the same metrics as an uninterrupted run (README
"Running suites"): the model, optimisers and schedulers (their state dicts), the history rows, the step, the
elapsed wall time and every random number generator's state. It is read with
``torch.load(weights_only=True, map_location="cpu")``: a file with anything but tensors and plain Python
containers (a planted pickle payload) is refused, never executed, and every tensor lands on the CPU, so a
checkpoint written on a GPU restores on a GPU or a CPU alike (the model and optimisers move the tensors to
their own device when they load them).
"""
from __future__ import annotations

import io
import logging
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from . import store

logger = logging.getLogger(__name__)


#: What a checkpoint holds (harness.train.Trainer.checkpoint writes them, Trainer.resume reads them).
KEYS = ("model", "optimizers", "schedulers", "random_state", "history", "step", "elapsed")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely; the message names the file and the fix."""


def rng_state() -> dict:
    """Every generator a run may draw from, as CPU tensors and plain data: torch's CPU generator, each CUDA
    device's generator (when CUDA is available), numpy's global generator and Python's `random`."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict) -> None:
    """Set every generator to `state` (from `rng_state`). CUDA states are restored for the devices present;
    a checkpoint from a machine with another number of GPUs restores the common ones and says so."""
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(cuda_states) != devices and (cuda_states or devices):
        logger.warning("checkpoint holds the random state of %d CUDA device(s), this machine has %d: "
                       "restoring the first %d", len(cuda_states), devices, min(len(cuda_states), devices))
    for index, cuda_state in enumerate(cuda_states[:devices]):
        torch.cuda.set_rng_state(cuda_state, index)
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gauss"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically (store.atomic_write_bytes), with the user's umask."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    store.atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, every tensor on the CPU. Raises CheckpointError, naming the file, when it
    holds anything but tensors and plain containers (its code is not run), cannot be read, or lacks a KEY."""
    path = Path(path)
    fix = "delete the file, or rerun the suite with --force, to train this run from scratch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refusal = _refusal(error)
        if "GLOBAL" not in refusal:  # not a disallowed object: bytes that are no valid pickle at all
            raise CheckpointError(f"{path}: cannot read this checkpoint (damaged: {refusal}); {fix}") from None
        raise CheckpointError(
            f"{path}: refused to load this checkpoint: it holds objects other than tensors and plain "
            f"containers, which loading would run as code ({refusal}). A harness checkpoint never does; "
            f"{fix}") from None
    except Exception as error:  # noqa: BLE001 — torch raises RuntimeError, KeyError, EOFError... on damage
        raise CheckpointError(
            f"{path}: cannot read this checkpoint ({type(error).__name__}: {error}); {fix}") from error
    missing = [key for key in KEYS if key not in state] if isinstance(state, dict) else list(KEYS)
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this harness (it lacks {', '.join(missing)}; an "
                              f"older version may have written it); {fix}")
    return state


def _refusal(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that names what was refused (the rest advises loading the
    file unsafely)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or ["unpickling refused"])[0]
