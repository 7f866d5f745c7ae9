"""`study bench train`: end-to-end training speed (the real engine: loader, autocast, AdamW, schedule) and MFU, with the
data loader measured alone at the same config in the same run, so "does the loader keep up?" is one ratio.

MFU = analytic model FLOPs per pair (forward + backward) x pairs/s / the measured matmul peak of the precision used.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from study.bench.data import pairs_per_second
from study.bench.model import matmul_peak
from study.config import RunConfig
from study.config_load import load_config
from study.console import console as make_console, table as make_table
from study.data.dataset import default_workers
from study.model import build_model
from study.model.flops import pair_flops
from study.train.engine import autocast_dtype, resolve_device, train
from study.train.data import build_training_data


def trainer_rate(cfg: RunConfig, steps: int) -> float:
    """Pairs/s of `train` over `steps` optimizer steps after 2 warm-up steps (logged every step)."""
    rates: list[float] = []
    cfg.train.log_every, cfg.train.recon_pairs, cfg.train.checkpoint_every = 1, 0, 10**9
    cfg.train.epochs = 10_000.0  # the stop below ends the run; the schedule only needs to be long
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp), resume=False, progress=False,
              on_metrics=lambda m, step: rates.append(m["train.pairs_per_s"]),
              periodic=(1, lambda model, step, epoch: step >= steps + 2))
    timed = rates[2:] or rates
    return len(timed) / sum(1 / r for r in timed)  # harmonic mean = total pairs / total time


def loader_rate(cfg: RunConfig, seconds: float) -> float:
    data = build_training_data(cfg)
    workers = default_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers
    return pairs_per_second(data.dataset, data.videos_per_batch, workers, seconds)


def bench_train(steps: int = 6) -> None:
    console = make_console()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    console.print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    cpu = load_config("cpu")
    configs = {
        f"cpu budget: {cpu.model.preset} ViT/{cpu.model.patch_size}, {cpu.model.img_size} px, batch {cpu.train.batch_size}": cpu,
        "ViT-S/16, cross-self 512/8/16, 224 px, batch 8": load_config("cpu", overrides={
            "model.preset": "small", "model.patch_size": 16, "model.img_size": 224, "model.decoder_dim": 512,
            "model.decoder_depth": 8, "model.decoder_heads": 16, "train.batch_size": 8}),
    }
    table = make_table(f"study bench train ({torch.get_num_threads()} threads)", ["config", "precision"],
                       ["train pairs/s", "GFLOP/pair", "MFU", "loader pairs/s", "loader / train"])
    for name, cfg in configs.items():
        flops = pair_flops(build_model(cfg.model))["forward_backward"]
        precision = "bf16" if autocast_dtype(cfg.train.precision, resolve_device()) else "fp32"
        t0 = time.perf_counter()
        rate = trainer_rate(cfg, steps if cfg.model.preset == "small" else 4 * steps)
        loader = loader_rate(cfg, seconds=min(10.0, max(3.0, time.perf_counter() - t0)))
        mfu = flops * rate / peaks[precision]
        table.add_row(name, precision, f"{rate:.1f}", f"{flops / 1e9:.1f}", f"{mfu:.0%}", f"{loader:.1f}",
                      f"{loader / rate:.1f}x")
    console.print(table)
    console.print("targets: loader >= 1.5x the trainer at the same config; ViT-S/16 step >= 50% of the bf16 matmul peak")
