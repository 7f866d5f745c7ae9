"""The training engine: one function, `train`, that a trial (or `study train`) calls.

Pairs from videos -> SiamMAE -> loss; AdamW with MAE's schedule; gradient accumulation; bf16 autocast where it pays;
optional torch.compile; DDP under torchrun (rank 0 logs and checkpoints); atomic checkpoints and exact resume.
It knows nothing of studies, Optuna or MLflow: progress leaves through the `on_metrics` callback.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from timm.optim import param_groups_weight_decay

from study.config import RunConfig
from study.errors import UserError
from study.model import SiamMAE, build_model
from study.train.progress import TrainProgress
from study.train.recon import save_reconstruction
from study.train.state import (CHECKPOINT, Schedule, check_resumable, learning_rate, load_checkpoint, mask_generator,
                               save_checkpoint, set_rng_state)

MetricsCallback = Callable[[dict[str, float], int], None]
PeriodicCallback = Callable[[SiamMAE, int, float], bool]  # (model, step, epoch) -> stop early (pruned)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf: the run stops with one line naming the step; the last good checkpoint stays.
    A training failure, not bad input: `study train` reports it in one line with exit code 1, a trial records it as
    failed and the study goes on."""


@dataclass
class TrainResult:
    model: SiamMAE
    steps: int
    losses: list[float] = field(default_factory=list)   # one per optimizer step, the whole run (resumes included)
    wall_s: float = 0.0
    skipped_videos: list[str] = field(default_factory=list)
    resumed_from: int = 0
    pruned: bool = False
    run_dir: Path | None = None


def resolve_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """bf16 autocast pays on CPUs with bf16 units (AVX512-BF16 or AMX); elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32" or (precision == "auto" and device.type == "cpu" and not cpu_has_bf16()):
        return None
    return torch.bfloat16


def setup_distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group); the group is started when launched by
    torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    started = world > 1 and not dist.is_initialized()
    if started:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world, started) if world > 1 else (0, 1, False)


def global_mean(value: torch.Tensor, world: int) -> float:
    """The mean of a scalar over the DDP ranks (each rank's loss is its slice's): the global batch's loss, on every
    rank, so all ranks log and stop (non-finite loss) alike."""
    if world > 1:
        value = value.detach().clone()
        dist.all_reduce(value)  # SUM: gloo has no AVG
        value /= world
    return float(value)


def build_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.AdamW:
    """AdamW (0.9, 0.95) with MAE's `add_weight_decay` groups (timm's `param_groups_weight_decay`, no skip list):
    every trainable parameter with 2+ dimensions decays, the [CLS] and mask tokens included; biases and 1-D
    parameters (norms) do not; the fixed sin-cos position embeddings are not trained at all."""
    groups = param_groups_weight_decay(model, cfg.train.weight_decay)
    # fused: one kernel for all parameters instead of a few small ops per tensor (measured: 3.8 -> 2.7 CPU-s per
    # ViT-S/16 step on this CPU)
    return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.95), fused=True)


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = True, on_metrics: MetricsCallback | None = None,
          periodic: tuple[int, PeriodicCallback] | None = None, videos: list[Path] | None = None,
          progress: bool | dict = True) -> TrainResult:
    """Train SiamMAE as `cfg` says, in `run_dir` (checkpoints, recon.png). Resumes from run_dir's checkpoint when asked.
    `periodic` = (every n optimizer steps, callback): intermediate evaluations; the callback returns True to stop.
    `progress`: show the progress line (a dict: shown, with these TrainProgress options, e.g. a label)."""
    from study.train.data import build_training_data  # decord only where training runs

    run_dir.mkdir(parents=True, exist_ok=True)
    rank, world, group_started = setup_distributed()
    device = resolve_device()
    # The same seed on every rank: masks are drawn for the whole global batch and each rank keeps its rows, and the
    # data sampler hands each rank its slice of the global batch, so N ranks step exactly as one process would.
    torch.manual_seed(cfg.train.seed)
    data = build_training_data(cfg, videos=videos, rank=rank, world_size=world)
    sched = Schedule(n_videos=len(data.dataset), repeated_sampling=cfg.data.repeated_sampling,
                     micro_batch=cfg.train.batch_size, accum_iter=cfg.train.accum_iter, world_size=world,
                     epochs=cfg.train.epochs)
    model = build_model(cfg.model).to(device)
    model.mask_generator = mask_generator(cfg.train.seed)  # one seed on every rank: each keeps its rows (mask_shard)
    model.mask_shard = (rank, world)
    optimizer = build_optimizer(model, cfg)
    step, micro_step, losses = 0, 0, []
    ckpt_path = run_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        check_resumable(state, cfg, ckpt_path)
        if int(state.get("world_size", 1)) != world:  # the batches are addressed per global micro-batch
            raise UserError(f"{ckpt_path} was written by {int(state.get('world_size', 1))} process(es), this run has "
                            f"{world}; resume it with the same number of processes (torchrun --nproc_per_node)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, micro_step, losses = int(state["step"]), int(state["micro_step"]), state["losses"].tolist()
        set_rng_state(state["rng"], model)
    resumed_from = step
    net: torch.nn.Module = model
    if cfg.train.compile:
        net = torch.compile(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    amp = autocast_dtype(cfg.train.precision, device)
    total = sched.total_steps
    bar = TrainProgress(total, enabled=bool(progress) and rank == 0, start=step,
                        **(progress if isinstance(progress, dict) else {}))
    t_start, t_window, pairs_window = time.perf_counter(), time.perf_counter(), 0
    result = TrainResult(model=model, steps=step, losses=losses, skipped_videos=data.skipped, resumed_from=resumed_from,
                         run_dir=run_dir)
    model.train()
    try:
        while step < total:
            lr = learning_rate(step, sched, cfg.train)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss = torch.zeros((), device=device)
            for _ in range(cfg.train.accum_iter):
                f1, f2 = data.batch(micro_step, sched.micro_steps_per_pass)
                f1, f2 = f1.to(device, non_blocking=True), f2.to(device, non_blocking=True)
                sync = contextlib.nullcontext() if world == 1 or _ == cfg.train.accum_iter - 1 else net.no_sync()
                with sync, torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss, _pred, _mask = net(f1, f2)
                (loss / cfg.train.accum_iter).backward()
                step_loss += loss.detach().float() / cfg.train.accum_iter
                micro_step += 1
                pairs_window += f1.shape[0] * world
            step_loss = global_mean(step_loss, world)
            if not math.isfinite(step_loss):
                optimizer.zero_grad(set_to_none=True)
                where = f"; the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else ""
                raise NonFiniteLoss(f"training stopped: the loss is {step_loss} at step {step + 1}{where}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(step_loss)
            result.steps = step
            if rank == 0:
                bar.update(step, epoch=sched.epoch_at(step), loss=step_loss, lr=lr)
            if step % cfg.train.log_every == 0 or step == total:
                now = time.perf_counter()
                rate = pairs_window / max(now - t_window, 1e-9)
                t_window, pairs_window = now, 0
                bar.set_rate(rate)
                if on_metrics and rank == 0:
                    on_metrics({"train.loss": step_loss, "train.lr": lr, "train.pairs_per_s": rate,
                                "train.epoch": sched.epoch_at(step)}, step)
            if rank == 0 and (step % cfg.train.checkpoint_every == 0 or step == total):
                save_checkpoint(ckpt_path, model=model, optimizer=optimizer, step=step, micro_step=micro_step, cfg=cfg,
                                losses=losses, finished=step == total, world_size=world)
            if periodic and step % periodic[0] == 0 and step < total and periodic[1](model, step, sched.epoch_at(step)):
                result.pruned = True
                break
        if rank == 0 and cfg.train.recon_pairs:
            save_reconstruction(model, *sample_pairs(data, cfg.train.recon_pairs), run_dir / "recon.png", step=step)
    finally:
        bar.close()
        data.close()
        if group_started:
            dist.destroy_process_group()
    result.wall_s = time.perf_counter() - t_start
    result.skipped_videos = data.skipped
    return result


def sample_pairs(data, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first pair of the first k videos (pass 0): the same pairs for every run of a study, so pictures compare."""
    items = [data.dataset[(0, i)] for i in range(min(k, len(data.dataset)))]
    return torch.stack([a[0] for a, _ in items]), torch.stack([b[0] for _, b in items])
