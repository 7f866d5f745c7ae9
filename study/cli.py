"""The `study` command line. Thin: parse, then call one function of the modules below.

Heavy imports (torch, mlflow, optuna, polars) happen inside the commands so that `study --help` answers at once.
A `UserError` anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from study.config import ModelConfig
from study.errors import UserError


app = typer.Typer(help="SiamMAE Study: ablations of Siamese Masked Autoencoders, scheduled by Optuna, tracked in MLflow.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
bench_app = typer.Typer(help="Benchmarks that print the figures the issues ask for.", no_args_is_help=True)
data_app = typer.Typer(help="Generate the embedded default data sets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

RECIPE = ModelConfig()  # the paper's recipe: model-info's and bench model's defaults (one source, study/config.py)
SetOpt = typer.Option(None, "--set", help="override a config key: --set model.mask_ratio=0.9 (repeatable)")


# ---------------------------------------------------------------- model
@app.command("model-info")
def model_info(preset: str = RECIPE.preset, patch: int = RECIPE.patch_size, img: int = RECIPE.img_size,
               encoder: str = RECIPE.encoder, decoder: str = RECIPE.decoder, decoder_dim: int = RECIPE.decoder_dim,
               decoder_depth: int = RECIPE.decoder_depth, decoder_heads: int = RECIPE.decoder_heads,
               mask_ratio: float = RECIPE.mask_ratio) -> None:
    """Parameter counts (encoder, decoder, total) and FLOPs per frame pair."""
    from study.model.info import print_model_info

    print_model_info(preset=preset, patch_size=patch, img_size=img, encoder=encoder, decoder=decoder,
                     decoder_dim=decoder_dim, decoder_depth=decoder_depth, decoder_heads=decoder_heads,
                     mask_ratio=mask_ratio)


@bench_app.command("model")
def bench_model(batch: int = 8, steps: int = 3, preset: str = RECIPE.preset, patch: int = RECIPE.patch_size,
                img: int = RECIPE.img_size, decoder: str = RECIPE.decoder) -> None:
    """Matmul peaks (fp32, bf16) and forward+backward pairs/s and FLOP/s of a model, fp32 vs bf16 autocast."""
    from study.bench.model import bench_model as run

    run(batch=batch, steps=steps, preset=preset, patch_size=patch, img_size=img, decoder=decoder)


# ---------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(out: str = typer.Option(..., help="folder to write mp4 files into"), videos: int = 64, frames: int = 40,
               size: int = 96, seed: int = 0) -> None:
    """Generated training videos: textured objects moving over a moving textured background, as mp4."""
    from study.data.synth_videos import write_video_set

    write_video_set(out, n_videos=videos, n_frames=frames, size=size, seed=seed)


@data_app.command("synth-davis")
def data_synth_davis(out: str = typer.Option(..., help="folder to write the DAVIS-2017 layout into"),
                     sequences: int = 4, frames: int = 30, short_side: int = 480, seed: int = 0) -> None:
    """Generated sequences in the DAVIS-2017 layout with exact palette-PNG masks."""
    from study.data.synth_eval import write_davis

    write_davis(out, n_sequences=sequences, n_frames=frames, short_side=short_side, seed=seed)


@data_app.command("synth-jhmdb")
def data_synth_jhmdb(out: str = typer.Option(...), videos: int = 4, frames: int = 20, seed: int = 0) -> None:
    """Generated videos in the JHMDB layout (Rename_Images + joint_positions.mat)."""
    from study.data.synth_eval import write_jhmdb

    write_jhmdb(out, n_videos=videos, n_frames=frames, seed=seed)


@data_app.command("synth-vip")
def data_synth_vip(out: str = typer.Option(...), videos: int = 4, frames: int = 20, seed: int = 0) -> None:
    """Generated videos in the VIP layout (VIP_Fine/Images + Annotations/Category_ids)."""
    from study.data.synth_eval import write_vip

    write_vip(out, n_videos=videos, n_frames=frames, seed=seed)


@bench_app.command("data")
def bench_data(seconds: float = 5.0) -> None:
    """Pairs/s from the real mp4 clips with 0, 1 and 2 workers, repeated sampling 1 and 2."""
    from study.bench.data import bench_data as run

    run(seconds=seconds)


# ---------------------------------------------------------------- train
@app.command("train")
def train(config: Optional[str] = typer.Option(None, help="a TOML file of overrides"),
          budget: Optional[str] = typer.Option(None, help="smoke | cpu | paper (default: cpu without a GPU)"),
          set_: Optional[list[str]] = SetOpt, out: Optional[str] = typer.Option(None, help="run folder"),
          resume: bool = typer.Option(False, help="continue from the run folder's last checkpoint")) -> None:
    """One training run, no Optuna."""
    from study.train.cli import train_command

    train_command(config=config, budget=budget, overrides=set_ or [], out=out, resume=resume)


@bench_app.command("train")
def bench_train(steps: int = 6) -> None:
    """End-to-end pairs/s and MFU at the cpu budget and at ViT-S/16, with the loader measured in the same run."""
    from study.bench.train import bench_train as run

    run(steps=steps)


# ---------------------------------------------------------------- evaluate
@app.command("eval")
def evaluate(dataset: str = typer.Argument(..., help="davis | jhmdb | vip"),
             checkpoint: str = typer.Option(..., help="a study train checkpoint, a timm-exported encoder, or 'random'"),
             root: Optional[str] = typer.Option(None, help="dataset root (default: the generated set)"),
             protocol: str = typer.Option("paper", help="paper | dino | crw"), set_: Optional[list[str]] = SetOpt,
             out: Optional[str] = typer.Option(None, help="where results go (default: <checkpoint dir>/eval-<dataset>)")) -> None:
    """Label propagation on DAVIS-2017 (J&F), JHMDB (PCK) or VIP (mIoU)."""
    from study.evaluate.command import eval_command

    eval_command(dataset=dataset, checkpoint=checkpoint, root=root, protocol=protocol, overrides=set_ or [], out=out)


@bench_app.command("propagate")
def bench_propagate(frames: int = 6) -> None:
    """Windowed vs dense label propagation at 480p, ViT-S/16 and ViT-S/8 grids: frames/s and peak memory."""
    from study.bench.propagate import bench_propagate as run

    run(frames=frames)


@bench_app.command("davis-metrics")
def bench_davis_metrics(frames: int = 50) -> None:
    """Frames/s of J&F scoring at 854x480."""
    from study.bench.propagate import bench_davis_metrics as run

    run(frames=frames)


@bench_app.command("noise")
def bench_noise(budget: Optional[str] = None, seeds: int = typer.Option(3, help="training seeds (and random inits)"),
                eval_sets: int = typer.Option(3, help="generated DAVIS sets (eval.synth_seed 0, 1, ...)"),
                set_: Optional[list[str]] = SetOpt, workers: int = typer.Option(1, help="processes in parallel"),
                delta: float = typer.Option(2.0, help="the J&F difference to resolve"),
                out: Optional[str] = typer.Option(None, help="default: <state>/bench-noise-<budget>")) -> None:
    """Seed-to-seed spread of DAVIS J&F at a budget, split into training-seed and evaluation-set parts, and the seeds
    a study needs to resolve a difference. Example: study bench noise --budget cpu --seeds 3 --eval-sets 3"""
    from pathlib import Path

    from study.config import default_budget, load_config, parse_set, state_dir

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
def bench_tracking(system_metrics: bool = True, epochs: Optional[float] = None) -> None:
    """MLflow's share of one real smoke trial's wall time (target < 2%)."""
    from study.bench.tracking import bench_tracking as run

    run(system_metrics=system_metrics, epochs=epochs)


# ---------------------------------------------------------------- studies
@app.command("list")
def list_studies() -> None:
    """The studies in experiments/, with their axes and size."""
    from study.orchestrate import list_command

    list_command()


@app.command("show")
def show(name: str) -> None:
    """A study's question, axes, seeds, metric and cells."""
    from study.orchestrate import show_command

    show_command(name)


@app.command("run")
def run(name: str, budget: Optional[str] = typer.Option(None, help="smoke | cpu | paper"),
        workers: int = typer.Option(1, help="worker processes on this machine"),
        seeds: Optional[int] = typer.Option(None, help="seeds per cell (default: the study's)"),
        storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite in .study/)"),
        tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: sqlite in .study/)"),
        dry_run: bool = typer.Option(False, help="print the cells, their configs and cost; run nothing"),
        retry_failed: bool = typer.Option(False, help="run failed cells again"),
        set_: Optional[list[str]] = SetOpt) -> None:
    """Run every cell of a study (Optuna schedules, MLflow tracks); run again to resume."""
    from study.orchestrate import run_command

    run_command(name, budget=budget, workers=workers, seeds=seeds, storage=storage, tracking_uri=tracking_uri,
                dry_run=dry_run, retry_failed=retry_failed, overrides=set_ or [])


@app.command("status")
def status(name: str, budget: Optional[str] = None, storage: Optional[str] = None) -> None:
    """Per cell: done / running / failed / waiting, best so far, ETA."""
    from study.orchestrate import status_command

    status_command(name, budget=budget, storage=storage)


@app.command("ui")
def ui(port: int = 5000, host: str = typer.Option("127.0.0.1", help="bind address (loopback unless you say so)"),
       tracking_uri: Optional[str] = None) -> None:
    """The MLflow UI over this machine's study runs."""
    from study.tracking import serve_ui

    serve_ui(port=port, host=host, tracking_uri=tracking_uri)


# ---------------------------------------------------------------- reports
@app.command("report")
def report(name: str = typer.Argument(..., help="a study name, or 'table2' for every finished study"),
           budget: Optional[str] = None, tracking_uri: Optional[str] = None,
           out: Optional[str] = typer.Option(None, help="default: ./reports/<name>/ in the working directory")) -> None:
    """Table 2-style report: report.md, table.csv, table.tex, table.html and plots (other files there are kept)."""
    from analysis.report import report_command

    report_command(name, budget=budget, tracking_uri=tracking_uri, out=out)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # these machines have no internet; MLflow would retry
    try:
        app(args=argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
