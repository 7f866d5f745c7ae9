"""Evaluation frames: reading and resizing by the protocol, normalization, encoding; label maps to the patch grid and
soft labels back to image size; the frame loop every segmentation runner shares."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from study.errors import UserError
from study.evaluate.propagate import LabelPropagation
from study.evaluate.protocols import Protocol


def read_rgb(path: Path) -> np.ndarray:
    """An image file -> uint8 (H, W, 3); a file PIL cannot decode (corrupt, truncated, not an image) is a user error."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: not a readable image ({e}); replace or remove the file") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from an image's header, without decoding it."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: not a readable image ({e}); replace or remove the file") from None


def nearest_resize(ids: np.ndarray, size: tuple[int, int], convention: str) -> np.ndarray:
    """Nearest-neighbour resize of a label map (H, W) to size (h, w). 'floor': source = floor(dst * src / dst), as cv2's
    INTER_NEAREST (CRW, CropMAE); 'centre': PIL's NEAREST, which samples at pixel centres (DINO)."""
    if ids.shape[:2] == tuple(size):
        return ids
    if convention == "centre":
        return np.array(Image.fromarray(ids).resize((size[1], size[0]), Image.NEAREST))
    rows = np.minimum((np.arange(size[0]) * (ids.shape[0] / size[0])).astype(np.int64), ids.shape[0] - 1)
    cols = np.minimum((np.arange(size[1]) * (ids.shape[1] / size[1])).astype(np.int64), ids.shape[1] - 1)
    return ids[rows[:, None], cols[None, :]]


def load_frame(path: Path, size: tuple[int, int], protocol: Protocol) -> tuple[torch.Tensor, np.ndarray]:
    """An image -> (normalized (3, H, W) at `size`, uint8 original). Bilinear without antialias, half-pixel centres
    (cv2.resize's INTER_LINEAR, which every reference uses), and only when the size differs."""
    rgb = read_rgb(path)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x = (x[0] - torch.tensor(protocol.mean).view(3, 1, 1)) / torch.tensor(protocol.std).view(3, 1, 1)
    return x, rgb


@torch.inference_mode()
def encode(encoder, frame: torch.Tensor, device: str = "cpu", bf16: bool = False) -> torch.Tensor:
    """(3, H, W) -> (h, w, D) float32 patch features on the CPU (normalized later by the propagation)."""
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        feats = encoder.encode(frame[None].to(device))[0]
    return feats.float().cpu()


def labels_to_grid(ids: np.ndarray, grid: tuple[int, int], frame_hw: tuple[int, int], values: list[int],
                   protocol: Protocol) -> torch.Tensor:
    """(H0, W0) label ids -> (len(values), gh, gw) labels on the patch grid; channel c is label values[c], ids not in
    `values` get no channel.
    soft (CRW, CropMAE): the id map resized (nearest) to the frame size, one-hot there, bilinear down to the grid (no
    antialias: each cell is the mean of its 2x2 central pixels), so cells on an edge hold fractions.
    hard (DINO's read_seg): the id map resized (PIL nearest) straight to the grid, then one-hot."""
    if protocol.first_labels == "hard":
        small = nearest_resize(ids, grid, "centre")
        return torch.from_numpy(np.stack([small == v for v in values])).float()
    full = torch.from_numpy(nearest_resize(ids, frame_hw, protocol.nearest).astype(np.int64))
    onehot = torch.stack([full == v for v in values]).float()[None]                  # (1, C, H, W)
    return F.interpolate(onehot, size=grid, mode="bilinear", align_corners=False, antialias=False)[0]


def soft_to_ids(soft: torch.Tensor, frame_hw: tuple[int, int], out_hw: tuple[int, int], protocol: Protocol,
                values: list[int]) -> np.ndarray:
    """Soft labels (C, h, w) -> (H0, W0) uint8 ids: bilinear upsampling to the frame size (x patch), DINO's per-channel
    min-max normalisation when the protocol asks, argmax (lowest channel on a tie), label values, nearest resize to
    the ground truth's size."""
    up = F.interpolate(soft[None], size=frame_hw, mode="bilinear", align_corners=False)[0]
    if protocol.propagation.minmax_norm:
        lo = up.flatten(1).min(1).values.view(-1, 1, 1)
        hi = up.flatten(1).max(1).values.view(-1, 1, 1)
        normed = (up - lo) / torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
        up = torch.where(hi > 0, normed, up)           # DINO normalises only channels whose max is > 0
    ids = np.asarray(values, np.uint8)[up.argmax(0).numpy()]
    return nearest_resize(ids, out_hw, protocol.nearest)


def progress_bar(total: int, what: str):
    """A rich progress bar on a terminal, nothing otherwise (trials run in workers whose output is a log)."""
    from rich.progress import Progress

    progress = Progress(disable=not sys.stderr.isatty(), transient=True)
    return progress, progress.add_task(what, total=total)


def propagate_video(encoder, frames: list[Path], first_ids: np.ndarray, values: list[int], protocol: Protocol,
                    out_hw: tuple[int, int], device: str, bf16: bool):
    """Yields (t, original rgb, predicted ids at out_hw, soft labels (C, h, w)) for every frame; frame 0's prediction
    is the given labels on the grid pushed through the same output path."""
    patch = encoder.patch_size
    frame_hw = protocol.frame_hw(*first_ids.shape[:2], patch)
    for t, path in enumerate(frames):
        x, rgb = load_frame(path, frame_hw, protocol)
        feats = encode(encoder, x, device, bf16)
        if t == 0:
            soft = labels_to_grid(first_ids, feats.shape[:2], frame_hw, values, protocol)
            prop = LabelPropagation(protocol.propagation, feats, soft)
        else:
            soft = prop.step(feats)
        yield t, rgb, soft_to_ids(soft, frame_hw, out_hw, protocol, values), soft
