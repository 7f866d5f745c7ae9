"""The training run's view of the data: which videos, this process's shard, and batches addressed by micro-step.

Batches are addressed by the global micro-step, so a resumed run asks for micro-step k and gets exactly the batch an
uninterrupted run got there (the dataset's randomness is a pure function of (seed, pass, video index)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from study.config import RunConfig, state_dir
from study.data.dataset import FramePairDataset, make_loader
from study.data.pairs import videos_per_step
from study.data.video import find_videos


def training_videos(cfg: RunConfig) -> list[Path]:
    """data.root's videos, or the generated default set (made once, cached in the state folder)."""
    if cfg.data.root:
        return find_videos(cfg.data.root)
    from study.data.default_sets import ensure_train_set

    d = cfg.data
    root = ensure_train_set(state_dir(cfg), n_videos=d.synth_videos, n_frames=d.synth_frames, size=d.synth_size,
                            seed=d.synth_seed)
    return find_videos(root)


@dataclass
class TrainingData:
    dataset: FramePairDataset
    videos_per_batch: int
    num_workers: int
    seed: int
    rank: int = 0
    world_size: int = 1
    skipped: list[str] = field(default_factory=list)
    _loader_iter: object = None
    _next_micro_step: int = -1

    def batch(self, micro_step: int, per_pass: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of global micro-step `micro_step`: pass micro_step // per_pass, batch micro_step % per_pass."""
        if micro_step != self._next_micro_step:  # first call, or a resume: one loader chains all remaining passes
            first_pass, start = divmod(micro_step, per_pass)
            self.close()
            loader = make_loader(self.dataset, self.videos_per_batch, self.num_workers, self.seed, epoch=first_pass,
                                 start_batch=start, epochs=1_000_000, rank=self.rank, world_size=self.world_size)
            self._loader_iter = iter(loader)
        self._next_micro_step = micro_step + 1
        return next(self._loader_iter)

    def close(self) -> None:
        """Stop the loader's worker processes now (not at garbage collection)."""
        it, self._loader_iter = self._loader_iter, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.skipped = [str(p) for p in self.dataset.skipped]


def build_training_data(cfg: RunConfig, videos: list[Path] | None = None, rank: int = 0,
                        world_size: int = 1) -> TrainingData:
    """Under DDP every rank indexes all videos with the same seed and reads its slice of each global batch (the
    sampler's rank / world_size), so the ranks together see the batches of one process with the global batch."""
    paths = videos if videos is not None else training_videos(cfg)
    d = cfg.data
    dataset = FramePairDataset(paths, cfg.model.img_size, d.frame_gap, d.gap_fps, d.repeated_sampling, d.augmentation,
                               d.crop_scale, seed=cfg.train.seed * 1000, cache_mb=d.cache_mb)
    vpb = videos_per_step(cfg.train.batch_size, d.repeated_sampling)
    return TrainingData(dataset=dataset, videos_per_batch=vpb, num_workers=d.num_workers, seed=cfg.train.seed * 1000,
                        rank=rank, world_size=world_size, skipped=[str(p) for p in dataset.skipped])
