"""Nearest-code search as a chunked matrix product, and the spread of the codes' cells (`within_cell_distance`).

Euclidean: argmin_k ‖C_k‖² − 2 eᵀC_k (the ‖e‖² term is the same for every k). Cosine: argmax_k eᵀC_k on
l2-normalised inputs. Rows are processed in chunks so the score matrix never exceeds `budget` elements and
no (N, K, D) tensor is ever built.

Chunk size (`search_rows`, used when the caller gives none): on the CPU the (rows, K) score block is sized
to stay in cache (about 1 MiB of float32), because the search is bound by writing the scores and reading
them back for the argmin, not by the matrix product, except that a chunk has at least D rows (so streaming
the codebook once per chunk costs no more than the scores) and 16 rows (per-chunk overhead), and a score
matrix of at most 4 MiB is not split at all (fewer dispatches and thread wake-ups). One score
buffer is allocated per call and reused by every chunk (a fresh large buffer per chunk costs page faults).
On accelerators the chunk is as large as the `budget` allows (fewer kernel launches). Measured in
benchmarks/bench_search.py against torch.cdist + argmin and the naive broadcast.
"""
from __future__ import annotations

import math

import torch

#: Score-matrix elements per chunk (2^24 float32 = 64 MiB): the memory bound of any chunk.
DEFAULT_BUDGET = 1 << 24
#: CPU: score elements per chunk that keep the (rows, K) block in cache (2^18 float32 = 1 MiB).
CPU_CACHE_BLOCK = 1 << 18
#: CPU: fewest rows per chunk (bounds the per-chunk dispatch overhead).
CPU_MIN_ROWS = 16
#: CPU: a whole score matrix up to this many elements (4 MiB) is one chunk (nothing to gain from splitting).
CPU_SINGLE_CHUNK = 1 << 20


def chunk_rows(num_codes: int, budget: int = DEFAULT_BUDGET) -> int:
    """Rows of e per chunk so that a (rows, K) score matrix holds at most `budget` elements."""
    return max(1, budget // max(1, num_codes))


def search_rows(num_rows: int, num_codes: int, dim: int, device_type: str = "cpu",
                budget: int = DEFAULT_BUDGET) -> int:
    """Rows per chunk picked from the shapes (module docstring); never above `chunk_rows(num_codes, budget)`."""
    cap = chunk_rows(num_codes, budget)
    if device_type == "cpu" and num_rows * num_codes > CPU_SINGLE_CHUNK:
        rows = max(CPU_CACHE_BLOCK // max(1, num_codes), dim, CPU_MIN_ROWS)
    else:
        rows = cap
    rows = min(rows, cap, max(1, num_rows))
    # Equal chunks (the last one is not a sliver): same number of chunks, rows as even as possible.
    chunks = math.ceil(max(1, num_rows) / rows)
    return max(1, math.ceil(max(1, num_rows) / chunks))


@torch.no_grad()
def nearest_code(e: torch.Tensor, codebook: torch.Tensor, lookup: str = "euclidean", chunk_size: int | None = None):
    """Index of the nearest code for each row of e (N, D) in codebook (K, D).

    lookup "euclidean" minimises the squared distance; "cosine" maximises the dot product (the caller passes
    l2-normalised e and codebook). `chunk_size` rows per matrix product; None picks it from the shapes
    (`search_rows`).
    """
    if lookup not in ("euclidean", "cosine"):
        raise ValueError(f"unknown lookup {lookup!r}; valid: euclidean, cosine")
    codebook = codebook.to(e.dtype)
    num_rows, num_codes = e.shape[0], codebook.shape[0]
    rows = chunk_size or search_rows(num_rows, num_codes, e.shape[-1], e.device.type)
    out = torch.empty(num_rows, dtype=torch.long, device=e.device)
    if num_rows == 0:
        return out
    codes_t = codebook.t()
    code_sq = (codebook * codebook).sum(-1) if lookup == "euclidean" else None
    scores = torch.empty(min(rows, num_rows), num_codes, dtype=e.dtype, device=e.device)
    for start in range(0, num_rows, rows):
        chunk = e[start : start + rows]
        block = scores[: chunk.shape[0]]
        if lookup == "euclidean":
            torch.addmm(code_sq, chunk, codes_t, beta=1.0, alpha=-2.0, out=block)
            torch.argmin(block, dim=-1, out=out[start : start + rows])
        else:
            torch.mm(chunk, codes_t, out=block)
            torch.argmax(block, dim=-1, out=out[start : start + rows])
    return out


def within_cell_distance(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Mean pairwise distance among tokens (N, D) that share a code; NaN if no code has two tokens.

    Its change after one update measures push and pull within Voronoi cells (paper §4.3, Figure 5).
    """
    same = indices[:, None] == indices[None, :]
    same.fill_diagonal_(False)
    if not bool(same.any()):
        return torch.tensor(float("nan"))
    return torch.cdist(tokens, tokens)[same].mean()
