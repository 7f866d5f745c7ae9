"""`study bench gpu`: the paper budget on a CUDA GPU, measured in one run.

1. the GPU's bf16 matmul peak (8192^2), the ceiling the step's MFU is taken against;
2. the paper's ViT-S/16 training step (forward + backward + fused AdamW, bf16 autocast, the paper budget's micro-batch),
   eager and torch.compile'd: pairs/s, MFU, peak memory;
3. the loader: pairs/s of FramePairDataset + DataLoader over generated 224 px mp4 videos, every core decoding,
   repeated sampling 2;
4. 30 optimizer steps of the training engine (`study train` at the paper budget) on those videos: pairs/s and loss.
Targets on an H100: step >= 40% MFU; loader >= 1.5x the trainer's pairs/s.

Only torch, timm, decord, av, numpy, pillow and rich are imported here: the GPU machine has no MLflow, Optuna or polars.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from study.errors import UserError

TARGET_MFU, TARGET_LOADER = 0.40, 1.5


def step_rate(net, optimizer, f1, f2, steps: int) -> tuple[float, float, int]:
    """(pairs/s median over `steps` after 3 warm-up steps, mean pairs/s, peak GPU bytes) of forward + backward + AdamW."""
    import torch

    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _, _ = net(f1, f2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 3:  # warm-up: cuBLAS/cuDNN autotuning, allocator, compilation
            times.append(time.perf_counter() - t0)
    times.sort()
    return f1.shape[0] / times[len(times) // 2], f1.shape[0] * len(times) / sum(times), torch.cuda.max_memory_allocated()


def training_videos(folder: Path, n_videos: int, n_frames: int) -> list[Path]:
    from study.data.synth_videos import write_video_set
    from study.data.video import find_videos

    write_video_set(folder, n_videos=n_videos, n_frames=n_frames, size=224, seed=0)
    return find_videos(folder)


def bench_gpu(steps: int = 10, videos: int = 160, frames: int = 48, loader_seconds: float = 15.0,
              train_steps: int = 30, compile_: bool = True, out: str | None = None) -> None:
    import torch

    if not torch.cuda.is_available():
        raise UserError("study bench gpu needs a CUDA GPU and torch.cuda.is_available() is False here; "
                        "`study bench train` measures this machine's CPU")
    from rich.console import Console
    from rich.table import Table

    from study.bench.data import pairs_per_second
    from study.bench.model import matmul_peak
    from study.config_load import load_config
    from study.data.dataset import FramePairDataset
    from study.model import build_model
    from study.model.flops import pair_flops
    from study.train.engine import build_optimizer, train
    from study.train.state import Schedule

    con = Console(record=True, width=140)

    def save() -> None:
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "gpu-check.txt").write_text(con.export_text(clear=False))
            (Path(out) / "gpu-check.json").write_text(json.dumps(figures, indent=1))

    figures: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cores": os.cpu_count()}
    con.print(f"{figures['gpu']}, torch {torch.__version__} (CUDA {torch.version.cuda}), {os.cpu_count()} CPU cores")
    peak = matmul_peak(torch.bfloat16, n=8192, seconds=3.0, device="cuda")
    figures["bf16_peak_tflops"] = peak / 1e12
    con.print(f"bf16 matmul peak (8192^2, measured): {peak / 1e12:.0f} TFLOP/s")

    cfg = load_config("paper")
    m, t = cfg.model, cfg.train
    torch.manual_seed(0)
    model = build_model(m).cuda().train()
    flops = pair_flops(model)["forward_backward"]
    optimizer = build_optimizer(model, cfg)
    f1, f2 = torch.randn(2, t.batch_size, 3, m.img_size, m.img_size, device="cuda")
    table = Table(title=f"paper step: ViT-S/{m.patch_size} at {m.img_size} px, decoder {m.decoder} {m.decoder_dim}/"
                        f"{m.decoder_depth}/{m.decoder_heads}, mask {m.mask_ratio}, micro-batch {t.batch_size} pairs, "
                        f"{flops / 1e9:.1f} GFLOP per pair (fwd+bwd)")
    for col in ("torch.compile", "pairs/s (median)", "pairs/s (mean)", "MFU (bf16)", "peak memory"):
        table.add_column(col, justify="right")
    rates = {}
    for compiled in ((False, True) if compile_ else (False,)):
        net = torch.compile(model) if compiled else model
        t0 = time.perf_counter()
        try:
            median, mean, mem = step_rate(net, optimizer, f1, f2, steps)
        except Exception as e:  # e.g. no C compiler for Triton: report it and go on with eager figures
            figures["step_compiled"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            table.add_row("on", "failed", figures["step_compiled"]["error"][:60], "", "")
            continue
        rates[compiled] = median
        key = "compiled" if compiled else "eager"
        figures[f"step_{key}"] = {"pairs_per_s": median, "mfu": median * flops / peak, "peak_gib": mem / 2**30,
                                  "wall_s": time.perf_counter() - t0}
        table.add_row("on" if compiled else "off", f"{median:,.0f}", f"{mean:,.0f}", f"{median * flops / peak:.1%}",
                      f"{mem / 2**30:.1f} GiB")
    con.print(table)
    save()
    del model, optimizer, f1, f2, net
    torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = training_videos(Path(tmp) / "videos", videos, frames)
        con.print(f"generated {len(paths)} videos x {frames} frames at 224 px in {time.perf_counter() - t0:.0f} s")
        d = cfg.data
        ds = FramePairDataset(paths, m.img_size, d.frame_gap, d.gap_fps, 2, d.augmentation, d.crop_scale, seed=0)
        workers = max(1, (os.cpu_count() or 2) - 1)  # one core stays with the training loop, as in training
        loader = pairs_per_second(ds, 16, workers, loader_seconds)
        figures["loader_pairs_per_s"] = loader
        con.print(f"loader: {loader:,.0f} pairs/s ({workers} workers, repeated sampling 2, {d.augmentation}, 224 px)")
        ds4 = FramePairDataset(paths, m.img_size, d.frame_gap, d.gap_fps, 4, d.augmentation, d.crop_scale, seed=0)
        figures["loader_r4_pairs_per_s"] = loader4 = pairs_per_second(ds4, 8, workers, loader_seconds / 3)
        con.print(f"loader at repeated sampling 4 (for comparison): {loader4:,.0f} pairs/s")
        save()
        # the paper schedule squeezed into `train_steps` optimizer steps (warmup, then cosine), so the loss moves
        sched = Schedule(len(paths), d.repeated_sampling, t.batch_size, t.accum_iter, 1, t.epochs)

        run = load_config("paper", overrides={"data.root": str(Path(tmp) / "videos"), "train.log_every": 1,
                                              "train.epochs": train_steps / sched.steps_per_epoch,
                                              "train.checkpoint_every": 10**9, "train.recon_pairs": 0,
                                              "train.compile": bool(compile_ and rates.get(True, 0) > rates[False]),
                                              "data.num_workers": workers})
        logged: list[dict] = []
        t0 = time.perf_counter()
        train(run, Path(tmp) / "run", resume=False, progress=False,
              on_metrics=lambda metrics, step: logged.append({"step": step, **metrics}),
              periodic=(1, lambda model, step, epoch: step >= train_steps))
        wall = time.perf_counter() - t0
    timed = logged[2:] or logged  # the first steps pay for loader start-up and compilation
    trainer = len(timed) / sum(1 / r["train.pairs_per_s"] for r in timed)
    eff = run.train.batch_size * run.train.accum_iter
    figures["train"] = {"steps": len(logged), "pairs_per_step": eff, "pairs_per_s": trainer, "wall_s": wall,
                        "compile": run.train.compile, "loss_first": logged[0]["train.loss"],
                        "loss_last": logged[-1]["train.loss"], "mfu": trainer * flops / peak}
    con.print(f"study train, paper budget ({eff} pairs per step, compile {'on' if run.train.compile else 'off'}): "
              f"{len(logged)} steps in {wall:.0f} s, {trainer:,.0f} pairs/s after 2 warm-up steps "
              f"({trainer * flops / peak:.1%} MFU), loss {logged[0]['train.loss']:.4f} -> {logged[-1]['train.loss']:.4f}")
    best_step = max(rates.values())
    verdicts = [f"step: {best_step * flops / peak:.1%} MFU (target >= {TARGET_MFU:.0%}): "
                f"{'met' if best_step * flops / peak >= TARGET_MFU else 'NOT met'}",
                f"loader: {loader / trainer:.2f}x the trainer (target >= {TARGET_LOADER}x): "
                f"{'met' if loader >= TARGET_LOADER * trainer else 'NOT met'}"]
    if loader < TARGET_LOADER * trainer:
        need = TARGET_LOADER * max(trainer, best_step)
        verdicts.append(f"to feed the step ({best_step:,.0f} pairs/s) with margin the loader needs {need:,.0f}: "
                        f"repeated sampling 4 gives {loader4:,.0f} (x{loader4 / loader:.1f}); beyond that, videos "
                        "pre-resized to the crop size with short keyframe intervals (a pair decodes from the last "
                        "keyframe), GPU decoding (NVDEC), or more CPU cores per GPU")
    for line in verdicts:
        con.print(line)
    figures["verdicts"] = verdicts
    save()
    if out:
        print(f"written: {Path(out) / 'gpu-check.txt'}, {Path(out) / 'gpu-check.json'}")
