"""Nearest-code search as a chunked matrix product (DESIGN.md "Quantizer").

Euclidean: argmin_k ‖C_k‖² − 2 eᵀC_k (the ‖e‖² term is the same for every k). Cosine: argmax_k eᵀC_k on
l2-normalised inputs. Rows are processed in chunks so the score matrix never exceeds `budget` elements and
no (N, K, D) tensor is ever built.
"""
from __future__ import annotations

import torch

#: Score-matrix elements per chunk (2^24 float32 = 64 MiB).
DEFAULT_BUDGET = 1 << 24


def chunk_rows(num_codes: int, budget: int = DEFAULT_BUDGET) -> int:
    """Rows of e per chunk so that a (rows, K) score matrix holds at most `budget` elements."""
    return max(1, budget // max(1, num_codes))


@torch.no_grad()
def nearest_code(e: torch.Tensor, codebook: torch.Tensor, lookup: str = "euclidean", chunk_size: int | None = None):
    """Index of the nearest code for each row of e (N, D) in codebook (K, D).

    lookup "euclidean" minimises the squared distance; "cosine" maximises the dot product (the caller passes
    l2-normalised e and codebook). `chunk_size` rows per matrix product; None picks it from K.
    """
    if lookup not in ("euclidean", "cosine"):
        raise ValueError(f"unknown lookup {lookup!r}; valid: euclidean, cosine")
    codebook = codebook.to(e.dtype)
    rows = chunk_size or chunk_rows(codebook.shape[0])
    code_sq = (codebook * codebook).sum(-1) if lookup == "euclidean" else None
    out = torch.empty(e.shape[0], dtype=torch.long, device=e.device)
    for start in range(0, e.shape[0], rows):
        chunk = e[start : start + rows]
        if lookup == "euclidean":
            scores = torch.addmm(code_sq, chunk, codebook.t(), beta=1.0, alpha=-2.0)
            out[start : start + rows] = scores.argmin(-1)
        else:
            out[start : start + rows] = (chunk @ codebook.t()).argmax(-1)
    return out
