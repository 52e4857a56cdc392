"""Shared Vision-Transformer pieces for the ViT-VQGAN and TimeSformer-VQGAN families (paper §5.3, Tables 10-11).

* `Attention`: multi-head self-attention over the token axis of (batch, tokens, dim) through
  F.scaled_dot_product_attention.
* `MLP`: Linear → GELU → Linear.
* `Block`: a pre-norm transformer block, x + attn(norm(x)), then x + mlp(norm(x)).
* `Transformer`: `depth` blocks and a final LayerNorm.
* `sincos_1d` / `sincos_2d`: fixed sinusoidal position embeddings (the 2-D one gives half the channels to
  the row and half to the column, as in MAE / ViT-VQGAN's public implementations).
* `PositionEmbedding2D`: a learned or fixed sinusoidal (h·w, dim) embedding added to patch tokens.
* `patchify` / `unpatchify`: (B, C, H, W) ↔ (B, h·w, C·p·p), and the same for tubelets of video
  (B, C, T, H, W) ↔ (B, T'·h·w, C·pt·p·p).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITION_EMBEDDINGS = ("learned", "sincos")


def init_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated normal (std 0.02) for Linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (batch, tokens, dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (batch, heads, tokens, dim / heads)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """`depth` pre-norm blocks followed by a final LayerNorm; tokens (B, N, dim) in and out."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(len(positions), dim) sinusoidal embedding: half sines, half cosines (dim even)."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """(height·width, dim) fixed 2-D embedding, row-major; half the channels per axis (dim % 4 == 0)."""
    if dim % 4:
        raise ValueError(f"2-D sinusoidal embedding dim must be divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.cat([sincos_1d(rows.reshape(-1), dim // 2), sincos_1d(cols.reshape(-1), dim // 2)], dim=1)


class PositionEmbedding(nn.Module):
    """A (positions, dim) embedding, learned (trunc-normal std 0.02) or a fixed sinusoidal table (buffer)."""

    def __init__(self, table: torch.Tensor, kind: str):
        super().__init__()
        if kind not in POSITION_EMBEDDINGS:
            raise ValueError(f"unknown position embedding {kind!r}; valid: {', '.join(POSITION_EMBEDDINGS)}")
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.empty_like(table))
            nn.init.trunc_normal_(self.table, std=0.02)
        else:
            self.register_buffer("table", table, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table


def position_embedding_2d(height: int, width: int, dim: int, kind: str) -> PositionEmbedding:
    return PositionEmbedding(sincos_2d(height, width, dim) if kind == "sincos" else torch.zeros(height * width, dim),
                             kind)


def position_embedding_1d(length: int, dim: int, kind: str) -> PositionEmbedding:
    return PositionEmbedding(sincos_1d(torch.arange(length), dim) if kind == "sincos" else torch.zeros(length, dim),
                             kind)


def unpatchify(tokens: torch.Tensor, channels: int, grid: tuple[int, ...], patch: tuple[int, ...]) -> torch.Tensor:
    """Tokens (B, prod(grid), channels·prod(patch)) → channel-first (B, channels, *grid·patch).

    Works for images (grid (h, w), patch (p, p)) and video tubelets (grid (T', h, w), patch (pt, p, p)).
    """
    batch = tokens.shape[0]
    n = len(grid)
    x = tokens.reshape(batch, *grid, channels, *patch)
    # (B, g1..gn, C, p1..pn) → (B, C, g1, p1, ..., gn, pn)
    order = [0, n + 1] + [axis for i in range(n) for axis in (1 + i, n + 2 + i)]
    x = x.permute(*order)
    return x.reshape(batch, channels, *(g * p for g, p in zip(grid, patch)))


def patchify(x: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `unpatchify`: (B, C, *spatial) → (B, prod(spatial / patch), C·prod(patch))."""
    batch, channels, *spatial = x.shape
    n = len(spatial)
    grid = [s // p for s, p in zip(spatial, patch)]
    shape = [batch, channels] + [v for g, p in zip(grid, patch) for v in (g, p)]
    x = x.reshape(*shape)
    order = [0] + [2 + 2 * i for i in range(n)] + [1] + [3 + 2 * i for i in range(n)]
    return x.permute(*order).reshape(batch, math.prod(grid), channels * math.prod(patch))
