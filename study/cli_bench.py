"""`study bench ...`: the commands that print the speed and noise figures. Heavy imports inside each command."""

from __future__ import annotations

from typing import Optional

import typer

from study.cli_options import RECIPE, BudgetOpt, SetOpt, opt
from study.errors import UserError

bench_app = typer.Typer(help="Benchmarks that print the figures the issues ask for.", no_args_is_help=True,
                        rich_markup_mode=None)


@bench_app.command("model")
def bench_model(batch: int = opt(8, "frame pairs per step", "N"), steps: int = opt(3, "timed steps", "N"),
                preset: str = opt(RECIPE.preset, "ViT size", "NAME"), patch: int = opt(RECIPE.patch_size, "patch size", "PX"),
                img: int = opt(RECIPE.img_size, "input size", "PX"), decoder: str = opt(RECIPE.decoder, "decoder", "NAME")) -> None:
    """Matmul peaks (fp32, bf16) and forward+backward pairs/s and FLOP/s of a model, fp32 vs bf16 autocast.

    \b
    Example: study bench model --batch 4 --steps 2
    """
    from study.bench.model import bench_model as run

    run(batch=batch, steps=steps, preset=preset, patch_size=patch, img_size=img, decoder=decoder)


@bench_app.command("data")
def bench_data(seconds: float = opt(5.0, "seconds per measurement", "S")) -> None:
    """Pairs/s from the real mp4 clips with 0, 1 and 2 workers, repeated sampling 1 and 2.

    \b
    Example: study bench data --seconds 2
    """
    from study.bench.data import bench_data as run

    run(seconds=seconds)


@bench_app.command("train")
def bench_train(steps: int = opt(6, "timed steps", "N")) -> None:
    """End-to-end pairs/s and MFU at the cpu budget and at ViT-S/16, with the loader measured in the same run.

    \b
    Example: study bench train --steps 3
    """
    from study.bench.train import bench_train as run

    run(steps=steps)


@bench_app.command("gpu")
def bench_gpu(steps: int = opt(10, "timed steps per step measurement", "N"),
              videos: int = opt(160, "generated 224 px training videos (the paper micro-batch reads 128)", "N"),
              train_steps: int = opt(30, "optimizer steps of the paper-budget training run", "N"),
              compile_: bool = typer.Option(True, "--compile/--no-compile", help="also measure torch.compile"),
              out: Optional[str] = opt(None, "folder to write gpu-check.txt and gpu-check.json into", "DIR")) -> None:
    """On a CUDA GPU: the paper step's pairs/s and MFU (compile on/off), the loader, and 30 steps of study train.

    \b
    Example: study bench gpu --out gpu-check/
    """
    from study.bench.gpu import bench_gpu as run

    run(steps=steps, videos=videos, train_steps=train_steps, compile_=compile_, out=out)


@bench_app.command("propagate")
def bench_propagate(frames: int = opt(6, "frames to propagate", "N")) -> None:
    """Windowed vs dense label propagation at 480p, ViT-S/16 and ViT-S/8 grids: frames/s and peak memory.

    \b
    Example: study bench propagate --frames 4
    """
    from study.bench.propagate import bench_propagate as run

    run(frames=frames)


@bench_app.command("davis-metrics")
def bench_davis_metrics(frames: int = opt(50, "frames to score", "N")) -> None:
    """Frames/s of J&F scoring at 854x480.

    \b
    Example: study bench davis-metrics --frames 20
    """
    from study.bench.propagate import bench_davis_metrics as run

    run(frames=frames)


@bench_app.command("noise")
def bench_noise(budget: Optional[str] = BudgetOpt, seeds: int = opt(3, "training seeds (and random inits)", "N"),
                eval_sets: int = opt(3, "generated DAVIS sets (eval.synth_seed 0, 1, ...)", "N"),
                set_: Optional[list[str]] = SetOpt, workers: int = opt(1, "processes in parallel", "N"),
                delta: float = opt(2.0, "the J&F difference to resolve", "D"),
                out: Optional[str] = opt(None, "where results go (default: <state>/bench-noise-<budget>)", "DIR")) -> None:
    """Seed-to-seed spread of DAVIS J&F at a budget, split into training-seed and evaluation-set parts, and the seeds
    a study needs to resolve a difference.

    \b
    Example: study bench noise --budget cpu --seeds 3 --eval-sets 3
    """
    from pathlib import Path

    from study.config import state_dir
    from study.config_load import default_budget, load_config, parse_set

    if seeds < 2 or eval_sets < 1 or workers < 1:
        raise UserError(f"--seeds {seeds} --eval-sets {eval_sets} --workers {workers}: need seeds >= 2, eval sets >= 1, "
                        "workers >= 1")
    budget = budget or default_budget()
    overrides = parse_set(set_ or [])
    cfg = load_config(budget, overrides=overrides)
    from study.bench.noise import bench_noise as run

    run(budget, overrides, seeds, eval_sets, Path(out) if out else state_dir(cfg) / f"bench-noise-{budget}",
        workers=workers, delta=delta)


@bench_app.command("tracking")
def bench_tracking(system_metrics: bool = typer.Option(True, "--system-metrics/--no-system-metrics",
                                                       help="MLflow's CPU/RAM/GPU monitor on or off"),
                   epochs: Optional[float] = opt(None, "train this many epochs (default: the smoke budget's)", "E")) -> None:
    """MLflow's share of one real smoke trial's wall time (target < 2%).

    \b
    Example: study bench tracking --no-system-metrics
    """
    from study.bench.tracking import bench_tracking as run

    run(system_metrics=system_metrics, epochs=epochs)
