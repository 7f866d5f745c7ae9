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
from study.errors import UserError
from study.data.pairs import steps_per_effective_epoch, steps_per_pass
from study.model.load import safe_load

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class Schedule:
    """Step arithmetic of a run. Effective epochs (the paper's unit) are defined once, in study.data.pairs:
    a pass over the videos with repeated sampling r is r effective epochs."""
    n_videos: int             # videos of the training set (every DDP rank indexes all of them)
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
        """Global micro-batches (micro_batch x world_size pairs) in one pass over the videos."""
        return steps_per_pass(self.n_videos, self.repeated_sampling, self.micro_batch * self.world_size)

    @property
    def steps_per_epoch(self) -> float:
        """Optimizer steps per effective epoch."""
        return steps_per_effective_epoch(self.n_videos, self.repeated_sampling,
                                         self.micro_batch * self.world_size) / self.accum_iter

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


def mask_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The masking RNG of a training run: its own CPU generator (masks are drawn on the CPU), seeded per rank, so no
    other consumer of torch's global RNG (a DataLoader's iter(), a library) can shift the masks."""
    return torch.Generator().manual_seed(seed * 1000 + rank)


def rng_state(model: torch.nn.Module | None = None) -> dict[str, Any]:
    """The RNG states a step touches: the masking generator's, and torch's global ones (for anything else that draws
    from them). Data randomness is a pure function of (seed, epoch, index), so it needs no state here."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(model, "mask_generator", None)
    if generator is not None:
        state["masking"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], model: torch.nn.Module | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(model, "mask_generator", None)
    if generator is not None and "masking" in state:
        generator.set_state(state["masking"])


# Keys that may differ between a run and its resume: bookkeeping and the machine, not what is trained.
RESUME_MAY_DIFFER = ("train.checkpoint_every", "train.log_every", "data.num_workers")


def check_resumable(state: dict[str, Any], cfg: RunConfig, path: Path) -> None:
    """Resuming with another model, data or schedule would silently mix two runs: refuse with one line."""
    saved = RunConfig.from_dict(state["config"]).flat()
    ours = cfg.flat()
    differ = [k for k in ours if k.startswith(("model.", "data.", "train.")) and k not in RESUME_MAY_DIFFER
              and saved.get(k) != ours[k]]
    if differ:
        k = differ[0]
        raise UserError(f"{path} was written with {k} = {saved.get(k)!r}, this run has {ours[k]!r}; "
                        "use another --out folder or drop --resume")


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, micro_step: int,
                    cfg: RunConfig, losses: list[float], finished: bool, world_size: int = 1) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over the old one."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "micro_step": micro_step,
             "config": cfg.to_dict(), "rng": rng_state(model), "losses": torch.tensor(losses, dtype=torch.float64),
             "finished": finished, "world_size": world_size}
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """weights_only=True: a file carrying a pickled callable is refused with one line and nothing in it runs."""
    return safe_load(path)
