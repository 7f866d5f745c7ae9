"""Frame pairs from videos for training: the Dataset, its epoch-aware sampler and the DataLoader around them.

All randomness of an item is a pure function of (seed, epoch, video index): the gaps, the crops, the flips. The sampler
hands out (epoch, index) keys, so neither the worker count, the worker seeds nor persistent workers change a batch, and a
run resumed at (epoch, batch) sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from study.data.augment import paired_augment
from study.data.pairs import gap_range, sample_gap_pair
from study.data.video import VideoDecodeError, decode_errors, open_video, scan_videos
from study.errors import UserError


class FramePairDataset(Dataset):
    """Item i = video i decoded once -> (f1, f2), each float32 (r, 3, img_size, img_size) for r = repeated_sampling."""

    def __init__(self, videos: list[Path], img_size: int, frame_gap, gap_fps: float, repeated_sampling: int,
                 augmentation: str, crop_scale, seed: int, *, scan: bool = True, cache_mb: int = 0):
        if scan:  # read every header once, so bad files are known (and counted) in the main process
            good, self.skipped = scan_videos(list(videos))
        else:
            good, self.skipped = [(Path(p), 0, 0.0) for p in videos], []
        if not good:
            raise UserError(f"none of the {len(videos)} videos under data.root is readable (corrupt, empty or shorter than "
                            "2 frames); check the folder or leave data.root empty for the generated default set")
        self.videos = [p for p, _, _ in good]
        self.fps = [fps for _, _, fps in good]
        self.img_size, self.frame_gap, self.gap_fps = img_size, tuple(frame_gap), gap_fps
        self.r, self.augmentation, self.crop_scale, self.seed = repeated_sampling, augmentation, tuple(crop_scale), seed
        self.epoch = 0
        # Small sets (the generated default) are decoded once and kept as uint8 frames, per loader process: after the
        # first pass an item costs only its crops. Off (0) for real data sets, which do not fit.
        self.cache_bytes, self._cache = cache_mb * 2**20, {}

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer keys (the sampler's (epoch, i) keys carry their own)."""
        self.epoch = epoch

    def frame_pairs(self, path: Path, fps: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one video once and cut r pairs from it, each with its own gap, crop and flip."""
        cached, cached_fps = self._cache.get(path, (None, 0.0))
        vr = None if cached is not None else open_video(path)
        n = len(cached) if cached is not None else len(vr)
        if n < 2:
            raise VideoDecodeError(f"{path}: {n} frame(s)")
        fps = fps or cached_fps or float(vr.get_avg_fps())
        lo, hi = gap_range(self.frame_gap, self.gap_fps, fps)
        times = [sample_gap_pair(n, lo, hi, rng) for _ in range(self.r)]  # r x (t1, t2)
        wanted = sorted({t for pair in times for t in pair})
        if cached is None and self.cache_bytes > 0:
            cached = torch.from_numpy(vr.get_batch(list(range(n))).asnumpy()).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
            if cached.numel() <= self.cache_bytes:
                self.cache_bytes -= cached.numel()
                self._cache[path] = (cached, fps)
        if cached is not None:
            decoded = cached[wanted]
        else:
            decoded = torch.from_numpy(vr.get_batch(wanted).asnumpy()).permute(0, 3, 1, 2)  # (u, 3, H, W) uint8
        row = {t: k for k, t in enumerate(wanted)}
        pairs = [paired_augment(decoded[[row[t1], row[t2]]], self.img_size, self.augmentation, self.crop_scale, rng)
                 for t1, t2 in times]  # r x (2, 3, S, S)
        stacked = torch.stack(pairs)  # (r, 2, 3, S, S)
        return stacked[:, 0].contiguous(), stacked[:, 1].contiguous()

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        rng = np.random.default_rng([self.seed, epoch, i])
        errors = decode_errors()
        for step in range(len(self.videos)):  # a file that fails only at decode time: take the next one, deterministically
            j = (i + step) % len(self.videos)
            try:
                return self.frame_pairs(self.videos[j], self.fps[j], rng)
            except errors:
                if self.videos[j] not in self.skipped:
                    self.skipped.append(self.videos[j])
                    warnings.warn(f"skipping unreadable video {self.videos[j]}")
        raise UserError("no video under data.root could be decoded; check the files")


def collate_pairs(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """B items of (r, 3, S, S) pairs -> f1, f2 each (B*r, 3, S, S)."""
    f1 = torch.cat([a for a, _ in batch])
    f2 = torch.cat([b for _, b in batch])
    return f1, f2


class EpochSampler(Sampler):
    """(epoch, video index) keys: pass e visits the videos in the permutation drawn from (seed, e); the tail that would
    not fill a batch is dropped per pass so batches never straddle passes. `start_batch` skips the batches a resumed
    run already did in its first pass; `epochs` > 1 chains passes in one loader (no worker restart between them).

    Under DDP (world_size > 1) a global batch is videos_per_batch x world_size videos of the permutation and rank r
    takes the r-th slice of it: the ranks together read exactly the batches of one process with the global batch."""

    def __init__(self, n_videos: int, videos_per_batch: int, seed: int, epoch: int = 0, start_batch: int = 0,
                 epochs: int = 1, rank: int = 0, world_size: int = 1):
        self.n, self.vpb, self.seed, self.epoch, self.start, self.epochs = n_videos, videos_per_batch, seed, epoch, start_batch, epochs
        self.rank, self.world = rank, world_size
        per_global = videos_per_batch * world_size
        self.per_pass = (n_videos // per_global) * per_global

    def __len__(self) -> int:
        return (self.epochs * self.per_pass) // self.world - self.start * self.vpb

    def __iter__(self):
        per_global = self.vpb * self.world
        for e in range(self.epoch, self.epoch + self.epochs):
            order = np.random.default_rng([self.seed, e]).permutation(self.n)[: self.per_pass]
            first = self.start if e == self.epoch else 0
            for b in range(first, self.per_pass // per_global):
                lo = b * per_global + self.rank * self.vpb
                for i in order[lo:lo + self.vpb]:
                    yield e, int(i)


def default_workers() -> int:
    """-1 -> min(4, cores - 1): one core stays with the training loop; more than 4 decoders rarely pay on small frames."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def make_loader(dataset: FramePairDataset, videos_per_batch: int, num_workers: int, seed: int, epoch: int,
                start_batch: int = 0, epochs: int = 1, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches of videos_per_batch videos = videos_per_batch * r pairs, as (f1, f2) each (B*r, 3, S, S).

    One loader serves `epochs` passes from (epoch, start_batch); persistent workers would only pay across loaders,
    which chaining passes makes unnecessary. Pinned memory only when CUDA is there to use it.
    The loader gets its own seeded generator: without one, every iter() takes a draw from torch's global RNG (for the
    workers' base seed), so starting a loader at a resume would shift whatever else draws from it."""
    workers = default_workers() if num_workers < 0 else num_workers
    sampler = EpochSampler(len(dataset), videos_per_batch, seed, epoch, start_batch, epochs, rank, world_size)
    return DataLoader(dataset, batch_size=videos_per_batch, sampler=sampler, num_workers=workers,
                      collate_fn=collate_pairs, drop_last=True, pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(seed + epoch))

