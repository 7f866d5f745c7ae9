"""Evaluation frames: reading, resizing by DINO's rule, ImageNet normalization, encoding; label maps to the patch grid
and soft labels back to image size; contact sheets; the frame loop every segmentation runner shares."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from study.atomic import atomic_path
from study.evaluate.propagate import LabelPropagation

# DINO's eval_video_segmentation.py values (its std uses 0.228, not torchvision's 0.229)
MEAN = (0.485, 0.456, 0.406)
STD = (0.228, 0.224, 0.225)
SHEET_FRAMES = 4   # frames shown per sequence in a contact sheet


def eval_size(height: int, width: int, short_side: int, patch: int) -> tuple[int, int]:
    """DINO's rule: the short side becomes `short_side`, the long side keeps the aspect and is floored to a multiple of
    64 (854x480 -> 832x480). For other short sides the multiple scales with it (64 * short_side / 480, floored to a
    multiple of the patch, at least one patch): 192p -> multiples of 24 at patch 8. Both sides are multiples of the patch."""
    short = max(patch, short_side // patch * patch)
    multiple = max(patch, (64 * short_side // 480) // patch * patch)
    if height <= width:
        return short, max(multiple, int(short * width / height) // multiple * multiple)
    return max(multiple, int(short * height / width) // multiple * multiple), short


def load_frame(path: Path, size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """An image -> (ImageNet-normalized (3, H, W) at `size` (bilinear, no antialias, like cv2.resize), uint8 original)."""
    with Image.open(path) as im:
        rgb = np.array(im.convert("RGB"))
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0]
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    return x, rgb


@torch.inference_mode()
def encode(encoder, frame: torch.Tensor, device: str = "cpu", bf16: bool = False) -> torch.Tensor:
    """(3, H, W) -> (h, w, D) float32 patch features on the CPU (normalized later by the propagation)."""
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        feats = encoder.encode(frame[None].to(device))[0]
    return feats.float().cpu()


def labels_to_grid(ids: np.ndarray, grid: tuple[int, int], values: list[int]) -> torch.Tensor:
    """(H, W) label ids -> one-hot (len(values), gh, gw) on the patch grid (PIL NEAREST resize, as DINO's read_seg);
    channel c is label values[c]; ids not in `values` get no channel (all zero)."""
    small = np.array(Image.fromarray(ids).resize((grid[1], grid[0]), Image.NEAREST))
    return torch.from_numpy(np.stack([small == v for v in values])).float()


def soft_to_ids(soft: torch.Tensor, patch: int, out_size: tuple[int, int], minmax_norm: bool,
                values: list[int]) -> np.ndarray:
    """Soft labels (C, h, w) -> (H0, W0) uint8 ids: bilinear upsampling by the patch size, DINO's per-channel min-max
    normalisation (if asked), argmax, label values, NEAREST resize to the original size."""
    up = F.interpolate(soft[None], scale_factor=patch, mode="bilinear", align_corners=False)[0]
    if minmax_norm:
        lo = up.flatten(1).min(1).values.view(-1, 1, 1)
        hi = up.flatten(1).max(1).values.view(-1, 1, 1)
        normed = (up - lo) / torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
        up = torch.where(hi > 0, normed, up)           # DINO normalises only channels whose max is > 0
    ids = np.asarray(values, np.uint8)[up.argmax(0).numpy()]
    return np.array(Image.fromarray(ids).resize((out_size[1], out_size[0]), Image.NEAREST))


def contact_sheet(path: Path, images: list[np.ndarray], masks: list[np.ndarray], palette: list[int],
                  height: int = 200) -> None:
    """A row of frames with their masks blended in (palette colours, alpha 0.5), written atomically as PNG."""
    colours = np.array(palette, np.uint8).reshape(-1, 3)
    tiles = []
    for rgb, ids in zip(images, masks):
        blend = rgb.astype(np.float32)
        fg = ids > 0
        blend[fg] = 0.5 * blend[fg] + 0.5 * colours[ids[fg]]
        im = Image.fromarray(blend.astype(np.uint8))
        tiles.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR))
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def progress_bar(total: int, what: str):
    """A rich progress bar on a terminal, nothing otherwise (trials run in workers whose output is a log)."""
    from rich.progress import Progress

    progress = Progress(disable=not sys.stderr.isatty(), transient=True)
    return progress, progress.add_task(what, total=total)


def sheet_frames(n: int) -> list[int]:
    return sorted({round(i * (n - 1) / (SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)}) if n > 1 else [0]


def propagate_video(encoder, frames: list[Path], first_ids: np.ndarray, values: list[int], params, short_side: int,
                     device: str, bf16: bool):
    """Yields (t, original rgb, predicted ids at the original size, soft labels (C, h, w)) for every frame; frame 0's
    prediction is the given labels at patch resolution pushed through the same output path."""
    patch = encoder.patch_size
    with Image.open(frames[0]) as im:
        size = eval_size(im.height, im.width, short_side, patch)
    for t, path in enumerate(frames):
        x, rgb = load_frame(path, size)
        feats = encode(encoder, x, device, bf16)
        if t == 0:
            soft = labels_to_grid(first_ids, feats.shape[:2], values)
            prop = LabelPropagation(params, feats, soft)
        else:
            soft = prop.step(feats)
        ids = soft_to_ids(soft, patch, rgb.shape[:2], params.minmax_norm, values)
        yield t, rgb, ids, soft
