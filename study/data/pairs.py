"""Frame-pair sampling (the paper's gap range) and the one definition of an "effective epoch"."""

from __future__ import annotations

import numpy as np

from study.errors import UserError


def gap_range(frame_gap: tuple[int, int] | list[int], gap_fps: float, video_fps: float) -> tuple[int, int]:
    """The [min, max] gap in this video's frames. gap_fps > 0 means the range is given at that frame rate
    (paper: [4, 48] at 30 fps) and is rescaled by video_fps / gap_fps; 0 means raw frames."""
    lo, hi = int(frame_gap[0]), int(frame_gap[1])
    if gap_fps > 0 and video_fps > 0:
        scale = video_fps / gap_fps
        lo, hi = max(1, round(lo * scale)), max(1, round(hi * scale))
    return lo, max(lo, hi)


def sample_gap_pair(n_frames: int, gap_min: int, gap_max: int, rng: np.random.Generator) -> tuple[int, int]:
    """(t1, t2) with t2 = t1 + gap, gap uniform in [gap_min, gap_max] (clipped to what the video allows) and t1 uniform
    over the valid starts. A video shorter than gap_min + 1 frames uses its largest possible gap, n_frames - 1."""
    if n_frames < 2:
        raise ValueError(f"a frame pair needs at least 2 frames, got {n_frames}")
    longest = n_frames - 1
    if gap_min > longest:
        gap = longest
    else:
        gap = int(rng.integers(gap_min, min(gap_max, longest) + 1))
    t1 = int(rng.integers(0, n_frames - gap))
    return t1, t1 + gap


# ---------------------------------------------------------------- effective epochs (the paper's unit, MAE-ST's definition)
# A pass decodes every video once; with repeated sampling r each decode gives r pairs, so one pass counts as r
# "effective epochs" (400 effective epochs at r = 2 are 200 passes). A step takes `pairs_per_step` pairs, that is
# pairs_per_step / r videos; we require that division to be exact so every video of a batch gives the same r.

def effective_epochs(passes: float, r: int) -> float:
    """Effective epochs done after `passes` passes over the videos with repeated sampling r."""
    return passes * r


def videos_per_step(pairs_per_step: int, r: int) -> int:
    if pairs_per_step % r:
        raise UserError(f"train.batch_size = {pairs_per_step} pairs is not a multiple of data.repeated_sampling = {r}; "
                        f"pick a batch size divisible by {r}")
    return pairs_per_step // r


def steps_per_pass(n_videos: int, r: int, pairs_per_step: int) -> int:
    """Loader batches in one pass (the last incomplete batch is dropped)."""
    steps = n_videos // videos_per_step(pairs_per_step, r)
    if steps == 0:
        raise UserError(f"{n_videos} readable videos are fewer than one batch needs ({videos_per_step(pairs_per_step, r)}"
                        f" = train.batch_size / data.repeated_sampling); lower train.batch_size or add videos")
    return steps


def steps_per_effective_epoch(n_videos: int, r: int, pairs_per_step: int) -> float:
    """Batches per effective epoch: steps_per_pass / r (a float: a pass is r effective epochs)."""
    return steps_per_pass(n_videos, r, pairs_per_step) / r
