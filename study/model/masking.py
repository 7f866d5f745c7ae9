"""Which patches a frame keeps: MAE's `random_masking` plus the placements of the occlusion study.

Every strategy turns into a per-sample score (B, L); the `len_keep = int(L * (1 - r))` lowest scores are kept, exactly as
MAE's argsort of uniform noise. So every strategy keeps the same count per sample (batches stack) and returns MAE's
(x_kept, mask, ids_restore). mask: 0 = keep, 1 = masked, in the original patch order.
- random: uniform noise (MAE).
- block:  the kept patches form one contiguous (4-connected) block at a random place per sample; everything else is
          masked. The block is a rectangle bh x bw with bh = ceil(len_keep / bw), whose first or last row (drawn) holds
          the remainder, flush left or right (drawn), so the count is exact. bw is drawn among the widths whose
          rectangle fits the grid with an aspect ratio within 1:3 (as BEiT's block masking), else among all that fit.
          Placement: the top-left corner is drawn uniformly from [-(bh-1), h-1] x [-(bw-1), w-1] (every place where
          the block would overlap the grid) and the block is then slid inside. A plain uniform position over the
          in-grid places would show a corner patch in only 1 / ((h-bh+1)(w-bw+1)) of the samples (1 in 144 at 0.95 on
          14x14); sliding in gives the border rows and columns at least bh / (h+bh-1) each, so over a few hundred
          samples every patch is seen.
- grid:   the kept patches lie on a regular lattice of stride s with a random offset; s is the largest stride whose
          lattice still has len_keep points, and a lattice with spare points keeps a random subset of them.
- tube:   f1 and f2 are masked at the same places (VideoMAE's tube masking over a two-frame clip): one `random` score is
          drawn per sample and applied to both frames, so it needs mask_ratio_f1 = mask_ratio (study.config refuses
          anything else). On one frame alone it is `random`.
Every draw comes from the `generator` passed in (the training run's own masking generator, saved in its checkpoints),
never from torch's global RNG unless none is given.
"""

from __future__ import annotations

import math

import torch

from study.config import MASK_STRATEGIES, keep_count


def random_masking(x: torch.Tensor, mask_ratio: float, strategy: str = "random", grid_hw: tuple[int, int] | None = None,
                   generator: torch.Generator | None = None,
                   shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, L, D) -> x_kept (B, len_keep, D), mask (B, L), ids_restore (B, L). shard: see mask_scores."""
    B, L, _ = x.shape
    len_keep = _len_keep(L, mask_ratio)
    _check_strategy(strategy)
    if len_keep == L:  # nothing masked: keep the order, identity restore
        return keep_all(x)
    return apply_scores(x, mask_scores(B, L, len_keep, strategy, grid_hw, generator, shard).to(x.device), len_keep)


def _len_keep(L: int, mask_ratio: float) -> int:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return keep_count(L, mask_ratio)


def _check_strategy(strategy: str) -> None:
    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"mask strategy {strategy!r} is unknown; choose one of {', '.join(MASK_STRATEGIES)}")


def keep_all(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, L, _ = x.shape
    return x, torch.zeros(B, L, device=x.device), torch.arange(L, device=x.device).expand(B, L)


def mask_scores(B: int, L: int, len_keep: int, strategy: str, grid_hw: tuple[int, int] | None = None,
                generator: torch.Generator | None = None, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """(B, L) scores on the CPU; the len_keep lowest of each row are the kept patches.

    shard = (rank, world size) under DDP: the scores of the whole global batch (B x world rows) are drawn on every rank
    from the same generator state and each rank keeps its own rows, so the ranks together mask exactly as one process
    with the global batch would."""
    _check_strategy(strategy)
    rank, world = shard
    if strategy in ("random", "tube"):
        score = torch.rand(B * world, L, generator=generator)
    else:
        h, w = grid_hw or _square(L)
        if h * w != L:
            raise ValueError(f"grid {h}x{w} does not hold {L} patches")
        make = _block_scores if strategy == "block" else _grid_scores
        score = make(B * world, h, w, len_keep, generator)
    return score[rank * B:(rank + 1) * B]  # (B, L): this rank's rows of the global batch


def apply_scores(x: torch.Tensor, score: torch.Tensor, len_keep: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's gather: keep the len_keep lowest-scored tokens of each row. x (B, L, D), score (B, L)."""
    B, L, D = x.shape
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


def block_shapes(h: int, w: int, len_keep: int) -> list[tuple[int, int]]:
    """(bh, bw) rectangles that hold exactly len_keep patches with one partial row: bh = ceil(len_keep / bw)."""
    shapes = [(math.ceil(len_keep / bw), bw) for bw in range(math.ceil(len_keep / h), min(w, len_keep) + 1)]
    fair = [(bh, bw) for bh, bw in shapes if max(bh, bw) <= 3 * min(bh, bw)]
    return fair or shapes


def _block_scores(B: int, h: int, w: int, len_keep: int, generator: torch.Generator | None) -> torch.Tensor:
    """Kept block: its raster rank / L (lowest, kept in raster order); elsewhere 1 + raster index / L."""
    shapes = block_shapes(h, w, len_keep)
    score = 1 + torch.arange(h * w, dtype=torch.float32).repeat(B, 1) / (h * w)  # (B, L)
    picks = torch.randint(0, 1 << 30, (B, 4), generator=generator).tolist()
    for b, (pick_shape, pick_top, pick_left, pick_partial) in enumerate(picks):
        bh, bw = shapes[pick_shape % len(shapes)]
        top = min(max(pick_top % (h + bh - 1) - (bh - 1), 0), h - bh)  # slid inside the grid
        left = min(max(pick_left % (w + bw - 1) - (bw - 1), 0), w - bw)
        short = len_keep - (bh - 1) * bw  # patches in the partial row, 1..bw
        partial_row = 0 if pick_partial & 1 else bh - 1
        cols = range(bw - short, bw) if pick_partial & 2 else range(short)
        cells = [(r, c) for r in range(bh) for c in (cols if r == partial_row else range(bw))]
        idx = torch.tensor([(top + r) * w + left + c for r, c in cells])
        score[b, idx] = torch.arange(len(cells), dtype=torch.float32) / (h * w)
    return score


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
