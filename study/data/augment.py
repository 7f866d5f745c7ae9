"""Paired augmentation: one crop box, one flip, one colour jitter, drawn once and applied identically to f1 and f2.

Parameters come from torchvision's own samplers (RandomResizedCrop.get_params, ColorJitter.get_params) run under a
torch seed taken from the caller's numpy generator, so the result is a pure function of that generator (the dataset's
per-item generator, seeded by (seed, epoch, video index)). Those samplers take no generator argument, so they run
inside `torch.random.fork_rng`: torch's global RNG is seeded for them and restored after, untouched for anyone else.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range
JITTER = {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4), "hue": (-0.1, 0.1)}  # 0.4/0.4/0.4/0.1
BICUBIC = TF.InterpolationMode.BICUBIC


def resize_center(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`none`: short side to `size`, then the central size x size square (no randomness)."""
    frames = TF.resize(frames, [size], interpolation=BICUBIC, antialias=True)
    return TF.center_crop(frames, [size, size])


def _jitter(frames: torch.Tensor, params) -> torch.Tensor:
    order, b, c, s, h = params
    ops = {0: (TF.adjust_brightness, b), 1: (TF.adjust_contrast, c), 2: (TF.adjust_saturation, s), 3: (TF.adjust_hue, h)}
    for k in order.tolist():
        fn, v = ops[k]
        frames = fn(frames, v)
    return frames


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (k, 3, S, S) -> float32 ImageNet-normalized."""
    return TF.normalize(frames.float().div_(255.0), IMAGENET_MEAN, IMAGENET_STD)


def paired_augment(frames: torch.Tensor, img_size: int, augmentation: str, crop_scale, rng: np.random.Generator
                   ) -> torch.Tensor:
    """uint8 (k, 3, H, W) frames of one pair -> float32 (k, 3, img_size, img_size), every frame transformed alike."""
    if augmentation == "none":
        return normalize(resize_center(frames, img_size))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(rng.integers(2**62)))  # not torch.manual_seed: it also queues CUDA seeding
        top, left, h, w = T.RandomResizedCrop.get_params(frames, list(crop_scale), list(CROP_RATIO))
        jitter = T.ColorJitter.get_params(**JITTER) if augmentation == "crop_flip_color" else None
    frames = TF.resized_crop(frames, top, left, h, w, [img_size, img_size], interpolation=BICUBIC, antialias=True)
    if augmentation in ("crop_flip", "crop_flip_color") and rng.random() < 0.5:
        frames = TF.horizontal_flip(frames)
    if jitter is not None:
        frames = _jitter(frames, jitter)
    return normalize(frames)
