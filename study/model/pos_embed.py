"""Fixed 2-D sin-cos position embeddings, as MAE's `get_2d_sincos_pos_embed`, for any (h, w) grid.

Half of the channels encode the row, half the column; each half is [sin(pos * omega), cos(pos * omega)] with
omega = 1 / 10000^(2i / (D/2)). With `cls_token=True` a row of zeros is prepended for the [CLS] position, which is how
a timm ViT's `pos_embed` (1 + L positions) holds it. Written by hand: timm's sincos helpers use a different channel order
and temperature layout than MAE's, and the checkpoints this project exports must match MAE's convention.
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """pos (M,) -> (M, dim): [sin | cos] of pos * omega."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    angles = pos.double().reshape(-1)[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid_hw: tuple[int, int], cls_token: bool = False,
              base_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """(h*w [+1], dim) float32 embedding of an h x w patch grid in raster order (row-major, as patchify).

    base_hw: sample the embedding of a base_hw grid at the h x w grid's cell centres (fractional positions, the
    align_corners=False convention of F.interpolate), i.e. what interpolating the training grid's embedding to a new
    size does (DINO and timm do it for learned embeddings); without it, positions are the integers 0..h-1, 0..w-1."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    h, w = grid_hw
    r, c = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
    if base_hw is not None:
        r, c = (r + 0.5) * base_hw[0] / h - 0.5, (c + 0.5) * base_hw[1] / w - 0.5
    # MAE builds meshgrid(w, h) and stacks it, so channel half 0 encodes the column and half 1 the row
    rows, cols = torch.meshgrid(r, c, indexing="ij")  # (h, w) each
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)  # (h*w, dim)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


def interpolate_bicubic(table: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """DINO's `interpolate_pos_encoding`: a square n x n table (1, n*n, D) resized bicubically to an h x w grid ->
    (1, h*w, D). Like DINO (and CropMAE, whose evaluation reproduced the paper) it passes scale_factor (h + 0.1) / n,
    (w + 0.1) / n rather than the target size: torch then maps coordinates with that factor, which gives other values
    than size=(h, w) (by up to 0.2 on a random table)."""
    import math

    import torch.nn.functional as F

    n, dim = math.isqrt(table.shape[1]), table.shape[-1]
    if n * n != table.shape[1]:
        raise ValueError(f"bicubic interpolation needs a square table, got {table.shape[1]} positions")
    h, w = grid_hw
    grid = table.reshape(1, n, n, dim).permute(0, 3, 1, 2)
    out = F.interpolate(grid, scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic", align_corners=False)
    if tuple(out.shape[-2:]) != (h, w):
        raise ValueError(f"bicubic interpolation gave {tuple(out.shape[-2:])} for a {h}x{w} grid")
    return out.permute(0, 2, 3, 1).reshape(1, h * w, dim)
