"""What a training run keeps between processes: the lr schedule, checkpoints (atomic, weights-only), RNG states.

A checkpoint is a plain dict of tensors and numbers, so `torch.load(weights_only=True)` reads it and nothing in it can run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from study.atomic import atomic_path
from study.config import RunConfig, TrainConfig
from study.data.pairs import steps_per_effective_epoch, steps_per_pass
from study.model.load import safe_load

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class Schedule:
    """Step arithmetic of a run. Effective epochs (the paper's unit) are defined once, in study.data.pairs:
    a pass over the videos with repeated sampling r is r effective epochs."""
    n_videos: int             # videos this process reads (its shard under DDP)
    repeated_sampling: int
    micro_batch: int          # pairs per forward pass per process
    accum_iter: int
    world_size: int
    epochs: float             # effective epochs

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.accum_iter * self.world_size

    @property
    def micro_steps_per_pass(self) -> int:
        return steps_per_pass(self.n_videos, self.repeated_sampling, self.micro_batch)

    @property
    def steps_per_epoch(self) -> float:
        """Optimizer steps per effective epoch."""
        return steps_per_effective_epoch(self.n_videos, self.repeated_sampling, self.micro_batch) / self.accum_iter

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def epoch_at(self, step: float) -> float:
        return step / self.steps_per_epoch


def learning_rate(step: float, schedule: Schedule, t: TrainConfig) -> float:
    """MAE's per-iteration schedule: linear warmup from 0, then half-cycle cosine down to min_lr.
    The peak is lr = blr x effective batch / 256."""
    peak = t.blr * schedule.effective_batch / 256
    epoch = schedule.epoch_at(step)
    warmup = min(t.warmup_epochs, t.epochs)
    if epoch < warmup:
        return peak * epoch / warmup
    span = max(t.epochs - warmup, 1e-12)
    progress = min(1.0, (epoch - warmup) / span)
    return t.min_lr + (peak - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def rng_state() -> dict[str, Any]:
    """The RNGs a step touches (masking draws from torch's). Data randomness is a pure function of (seed, epoch, index),
    so it needs no state here."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, micro_step: int,
                    cfg: RunConfig, losses: list[float], finished: bool) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over the old one."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "micro_step": micro_step,
             "config": cfg.to_dict(), "rng": rng_state(), "losses": torch.tensor(losses, dtype=torch.float64),
             "finished": finished}
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """weights_only=True: a file carrying a pickled callable is refused with one line and nothing in it runs."""
    return safe_load(path)
