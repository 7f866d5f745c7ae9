"""Which patches a frame keeps: MAE's `random_masking` plus two placements for the occlusion study.

Every strategy turns into a per-sample score (B, L); the `len_keep = int(L * (1 - r))` lowest scores are kept, exactly as
MAE's argsort of uniform noise. So every strategy keeps the same count per sample (batches stack) and returns MAE's
(x_kept, mask, ids_restore). mask: 0 = keep, 1 = masked, in the original patch order.
- random: uniform noise (MAE).
- block:  one contiguous rectangle of masked patches at a random place (its last row may be partial so the count is
          exact); every patch outside it is kept.
- grid:   the kept patches lie on a regular lattice of stride s with a random offset; s is the largest stride whose
          lattice still has len_keep points, and a lattice with spare points keeps a random subset of them.
"""

from __future__ import annotations

import math

import torch

from study.config import keep_count

STRATEGIES = ("random", "block", "grid")


def random_masking(x: torch.Tensor, mask_ratio: float, strategy: str = "random", grid_hw: tuple[int, int] | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, L, D) -> x_kept (B, len_keep, D), mask (B, L), ids_restore (B, L)."""
    B, L, D = x.shape
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if strategy not in STRATEGIES:
        raise ValueError(f"mask strategy {strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
    len_keep = keep_count(L, mask_ratio)
    if len_keep == L:  # nothing masked: keep the order, identity restore
        ids = torch.arange(L, device=x.device).expand(B, L)
        return x, torch.zeros(B, L, device=x.device), ids
    if strategy == "random":
        score = torch.rand(B, L, generator=generator).to(x.device)
    else:
        h, w = grid_hw or _square(L)
        if h * w != L:
            raise ValueError(f"grid {h}x{w} does not hold {L} patches")
        make = _block_scores if strategy == "block" else _grid_scores
        score = make(B, h, w, len_keep, generator).to(x.device)

    ids_shuffle = torch.argsort(score, dim=1)  # ascending: lowest scores are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    mask = torch.ones(B, L, device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to patch order
    return x_kept, mask, ids_restore


def _square(L: int) -> tuple[int, int]:
    s = math.isqrt(L)
    if s * s != L:
        raise ValueError(f"{L} patches are not a square grid: pass grid_hw")
    return s, s


def _block_scores(B: int, h: int, w: int, len_keep: int, generator: torch.Generator | None) -> torch.Tensor:
    """Outside the rectangle: noise in [0, 1) (kept). Inside: 2 + reversed raster rank, so the rectangle's first
    n_mask patches in raster order are the masked ones."""
    n_mask = h * w - len_keep
    # heights whose rectangle (bh x ceil(n_mask / bh)) fits; prefer aspect ratios within 1:3 as BEiT's block masking
    heights = [bh for bh in range(math.ceil(n_mask / w), h + 1)]
    fair = [bh for bh in heights if max(bh, math.ceil(n_mask / bh)) <= 3 * min(bh, math.ceil(n_mask / bh))]
    heights = fair or heights
    score = torch.rand(B, h, w, generator=generator)
    picks = torch.randint(0, 1 << 30, (B, 3), generator=generator).tolist()
    for b, (pick_h, pick_top, pick_left) in enumerate(picks):
        bh = heights[pick_h % len(heights)]
        bw = math.ceil(n_mask / bh)
        top, left = pick_top % (h - bh + 1), pick_left % (w - bw + 1)
        rank = torch.arange(bh * bw, 0, -1, dtype=score.dtype).reshape(bh, bw)  # first in raster order = highest
        score[b, top:top + bh, left:left + bw] = 2 + rank
    return score.reshape(B, h * w)


def _grid_scores(B: int, h: int, w: int, len_keep: int, generator: torch.Generator | None) -> torch.Tensor:
    """Lattice points: noise in [0, 1) (kept first); the rest: 1 + noise."""
    stride = max(1, math.isqrt(h * w // max(len_keep, 1)))
    # with offset (oy, ox) the lattice has ceil((h-oy)/s) * ceil((w-ox)/s) points; shrink s until the worst offset fits
    while stride > 1 and math.ceil((h - stride + 1) / stride) * math.ceil((w - stride + 1) / stride) < len_keep:
        stride -= 1
    offsets = torch.randint(0, stride, (B, 2), generator=generator)
    rows = torch.arange(h)[None, :, None]  # (1, h, 1)
    cols = torch.arange(w)[None, None, :]  # (1, 1, w)
    on_lattice = ((rows - offsets[:, 0, None, None]) % stride == 0) & ((cols - offsets[:, 1, None, None]) % stride == 0)
    score = torch.rand(B, h, w, generator=generator) + (~on_lattice).float()
    return score.reshape(B, h * w)
