"""`study bench model`: matmul peaks of this machine and SiamMAE forward+backward+AdamW speed, fp32 vs bf16 autocast.

Model FLOP/s uses the analytic count of study.model.flops (forward + backward = 3x forward per pair), so the fractions
are comparable with the matmul peaks (the ceiling a transformer step can reach on this machine).
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

from study.config import RunConfig, apply_overrides


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0, device: str = "cpu") -> float:
    """Measured FLOP/s of an n x n matmul in `dtype` on `device` (best of repeated runs)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    # a GPU launches matmuls asynchronously: time a burst of them between synchronizations
    sync, burst = (torch.cuda.synchronize, 20) if a.is_cuda else (lambda: None, 1)
    a @ b  # warm-up: thread pool, oneDNN / cuBLAS kernel selection
    sync()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(burst):
            a @ b
        sync()
        best = max(best, burst * 2 * n**3 / (time.perf_counter() - t0))
    return best


def train_step_rate(model, optimizer, f1, f2, steps: int, bf16: bool) -> tuple[float, float]:
    """(pairs/s, pairs per CPU-second) of forward + backward + AdamW step: median over `steps` after one warm-up step.
    CPU time counts only when this process runs, so it shows what a shared machine hides in wall time."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times, cpu_times = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast:
            loss, _, _ = model(f1, f2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # step 0 warms up allocator and kernels
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    median = len(times) // 2
    return f1.shape[0] / sorted(times)[median], f1.shape[0] / sorted(cpu_times)[median]


def bench_model(batch: int, steps: int, preset: str, patch_size: int, img_size: int, decoder: str) -> None:
    """The model's keys not given here come from the recipe (RunConfig()), as the CLI's defaults do."""
    cfg = apply_overrides(RunConfig(), {"model.preset": preset, "model.patch_size": patch_size,
                                        "model.img_size": img_size, "model.decoder": decoder}, source="bench model")
    from study.model import build_model
    from study.model.flops import pair_flops

    m = cfg.model
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} cores, load average "
          f"{load:.1f}{' (shared machine: wall-clock figures are low)' if load > os.cpu_count() else ''}")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    for name, peak in peaks.items():
        print(f"2048^2 matmul {name}: {peak / 1e9:7.1f} GFLOP/s")
    flops = pair_flops(m)["forward_backward"]
    print(f"model: {preset}/{patch_size} at {img_size}, decoder {decoder} {m.decoder_dim}/{m.decoder_depth}/"
          f"{m.decoder_heads}, mask {m.mask_ratio}, batch {batch}: {flops / 1e9:.1f} GFLOP per pair (fwd+bwd)")
    torch.manual_seed(0)
    model = build_model(m).train()
    # fused=True: one kernel per step instead of ~6 elementwise ops per tensor (measured 3.8 -> 2.7 CPU-s per step)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95),
                                  fused=True)
    f1, f2 = torch.randn(2, batch, 3, img_size, img_size)
    for name, bf16 in (("fp32", False), ("bf16", True)):
        rate, per_cpu_s = train_step_rate(model, optimizer, f1, f2, steps, bf16)
        achieved = rate * flops
        print(f"fwd+bwd+AdamW {name:4s}{' autocast' if bf16 else '         '}: {rate:6.2f} pairs/s, "
              f"{achieved / 1e9:6.1f} GFLOP/s = {100 * achieved / peaks[name]:4.1f}% of the {name} matmul peak "
              f"({per_cpu_s:.2f} pairs per CPU-second)")
