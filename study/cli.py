"""The `study` command line. Thin: parse, then call one function of the modules below.

Heavy imports (torch, mlflow, optuna, polars) happen inside the commands so that `study --help` answers at once.
A `UserError` anywhere becomes one line on stderr and exit code 2.
Help is Click's plain layout: Typer's rich layout prints a Python type beside every option and flag.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from study.config import ModelConfig
from study.errors import UserError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True, rich_markup_mode=None)
bench_app = typer.Typer(help="Benchmarks that print the figures the issues ask for.", no_args_is_help=True,
                        rich_markup_mode=None)
data_app = typer.Typer(help="Generate the embedded default data sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

RECIPE = ModelConfig()  # the paper's recipe: model-info's and bench model's defaults (one source, study/config.py)


def _study_names(incomplete: str) -> list[str]:
    from study.studies import study_names

    return [n for n in study_names() if n.startswith(incomplete)]


def opt(default, help: str, metavar: str = "", *names: str, **kwargs):
    """An option with its help and a metavar (flags: none), so help shows no Python types."""
    return typer.Option(default, *names, help=help, metavar=metavar or None, **kwargs)


def flag(help: str, *names: str):
    return typer.Option(False, *names, help=help)


def name_arg(help: str = "a study: a file in experiments/studies/ without .toml (see `study list`)"):
    return typer.Argument(..., metavar="NAME", help=help, autocompletion=_study_names)


SetOpt = opt(None, "override a config key (repeatable): --set model.mask_ratio=0.9", "KEY=VALUE", "--set")
BudgetOpt = opt(None, "smoke | cpu | paper (default: cpu without a GPU)", "BUDGET")
StorageOpt = opt(None, "Optuna storage URL (default: sqlite in .study/)", "URL")
TrackingOpt = opt(None, "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in .study/)", "URI")
StudySetOpt = opt(None, "the --set values the study was run with (repeatable)", "KEY=VALUE", "--set")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"study {version('siammae-study')}")
        except PackageNotFoundError:
            print("study (not installed as a package)")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True,
                                              callback=_version),
                 log_level: Optional[str] = opt(None, "debug | info | warning | error (default: $STUDY_LOG_LEVEL, "
                                                      "else warning)", "LEVEL")) -> None:
    """SiamMAE Study: ablations of Siamese Masked Autoencoders, scheduled by Optuna, tracked in MLflow.

    \b
    Example: study run mask_ratio, then study ui and study report mask_ratio
    """
    from study.logs import configure_logging

    configure_logging(log_level)


# ---------------------------------------------------------------- model
@app.command("model-info")
def model_info(preset: str = opt(RECIPE.preset, "ViT size: micro | mini | tiny | small | base", "NAME"),
               patch: int = opt(RECIPE.patch_size, "patch size in pixels", "PX"),
               img: int = opt(RECIPE.img_size, "input size in pixels", "PX"),
               encoder: str = opt(RECIPE.encoder, "siamese | joint", "NAME"),
               decoder: str = opt(RECIPE.decoder, "joint | cross-self | cross", "NAME"),
               decoder_dim: int = opt(RECIPE.decoder_dim, "decoder width", "N"),
               decoder_depth: int = opt(RECIPE.decoder_depth, "decoder blocks", "N"),
               decoder_heads: int = opt(RECIPE.decoder_heads, "decoder attention heads", "N"),
               mask_ratio: float = opt(RECIPE.mask_ratio, "share of f2's patches masked", "R")) -> None:
    """Parameter counts (encoder, decoder, total) and FLOPs per frame pair.

    \b
    Example: study model-info --patch 8 --decoder cross
    """
    from study.model.info import print_model_info

    print_model_info(preset=preset, patch_size=patch, img_size=img, encoder=encoder, decoder=decoder,
                     decoder_dim=decoder_dim, decoder_depth=decoder_depth, decoder_heads=decoder_heads,
                     mask_ratio=mask_ratio)


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


# ---------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(out: str = opt(..., "folder to write mp4 files into", "DIR"), videos: int = opt(64, "videos", "N"),
               frames: int = opt(40, "frames per video", "N"), size: int = opt(96, "frame size", "PX"),
               seed: int = opt(0, "random seed", "N")) -> None:
    """Generated training videos: textured objects moving over a moving textured background, as mp4.

    \b
    Example: study data synth --out videos/ --videos 8
    """
    from study.data.synth_videos import write_video_set

    write_video_set(out, n_videos=videos, n_frames=frames, size=size, seed=seed)


@data_app.command("synth-davis")
def data_synth_davis(out: str = opt(..., "folder to write the DAVIS-2017 layout into", "DIR"),
                     sequences: int = opt(4, "sequences", "N"), frames: int = opt(30, "frames per sequence", "N"),
                     short_side: int = opt(480, "short side in pixels", "PX"),
                     seed: int = opt(0, "random seed", "N")) -> None:
    """Generated sequences in the DAVIS-2017 layout with exact palette-PNG masks.

    \b
    Example: study data synth-davis --out davis/ --sequences 2
    """
    from study.data.synth_eval import write_davis

    write_davis(out, n_sequences=sequences, n_frames=frames, short_side=short_side, seed=seed)


@data_app.command("synth-jhmdb")
def data_synth_jhmdb(out: str = opt(..., "folder to write the JHMDB layout into", "DIR"),
                     videos: int = opt(4, "videos", "N"), frames: int = opt(20, "frames per video", "N"),
                     seed: int = opt(0, "random seed", "N")) -> None:
    """Generated videos in the JHMDB layout (Rename_Images + joint_positions.mat).

    \b
    Example: study data synth-jhmdb --out jhmdb/
    """
    from study.data.synth_eval import write_jhmdb

    write_jhmdb(out, n_videos=videos, n_frames=frames, seed=seed)


@data_app.command("synth-vip")
def data_synth_vip(out: str = opt(..., "folder to write the VIP layout into", "DIR"),
                   videos: int = opt(4, "videos", "N"), frames: int = opt(20, "frames per video", "N"),
                   seed: int = opt(0, "random seed", "N")) -> None:
    """Generated videos in the VIP layout (VIP_Fine/Images + Annotations/Category_ids).

    \b
    Example: study data synth-vip --out vip/
    """
    from study.data.synth_eval import write_vip

    write_vip(out, n_videos=videos, n_frames=frames, seed=seed)


@bench_app.command("data")
def bench_data(seconds: float = opt(5.0, "seconds per measurement", "S")) -> None:
    """Pairs/s from the real mp4 clips with 0, 1 and 2 workers, repeated sampling 1 and 2.

    \b
    Example: study bench data --seconds 2
    """
    from study.bench.data import bench_data as run

    run(seconds=seconds)


# ---------------------------------------------------------------- train
@app.command("train")
def train(config: Optional[str] = opt(None, "a TOML file of overrides", "FILE"), budget: Optional[str] = BudgetOpt,
          set_: Optional[list[str]] = SetOpt, out: Optional[str] = opt(None, "run folder", "DIR"),
          resume: bool = flag("continue from the run folder's last checkpoint", "--resume")) -> None:
    """One training run, no Optuna.

    \b
    Example: study train --budget smoke --set model.decoder=cross --out runs/cross
    """
    from study.train.cli import train_command

    train_command(config=config, budget=budget, overrides=set_ or [], out=out, resume=resume)


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


# ---------------------------------------------------------------- evaluate
@app.command("eval")
def evaluate(dataset: str = typer.Argument(..., metavar="DATASET", help="davis | jhmdb | vip (an unknown one is a "
                                                                         "one-line error from the command)"),
             checkpoint: str = opt(..., "a study train checkpoint, a timm-exported encoder, or 'random'", "PATH"),
             root: Optional[str] = opt(None, "dataset root (default: the generated set)", "DIR"),
             protocol: str = opt("paper", "paper | dino | crw", "NAME"), set_: Optional[list[str]] = SetOpt,
             out: Optional[str] = opt(None, "where results go (default: <checkpoint dir>/eval-<dataset>)", "DIR")) -> None:
    """Label propagation on DAVIS-2017 (J&F), JHMDB (PCK) or VIP (mIoU).

    \b
    Example: study eval davis --checkpoint runs/cross/checkpoint.pt --root DAVIS/
    """
    from study.evaluate.command import eval_command

    eval_command(dataset=dataset, checkpoint=checkpoint, root=root, protocol=protocol, overrides=set_ or [], out=out)


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
def bench_tracking(system_metrics: bool = typer.Option(True, "--system-metrics/--no-system-metrics",
                                                       help="MLflow's CPU/RAM/GPU monitor on or off"),
                   epochs: Optional[float] = opt(None, "train this many epochs (default: the smoke budget's)", "E")) -> None:
    """MLflow's share of one real smoke trial's wall time (target < 2%).

    \b
    Example: study bench tracking --no-system-metrics
    """
    from study.bench.tracking import bench_tracking as run

    run(system_metrics=system_metrics, epochs=epochs)


# ---------------------------------------------------------------- studies
@app.command("list")
def list_studies() -> None:
    """The studies in experiments/, with their axes and size.

    \b
    Example: study list
    """
    from study.catalog import list_command

    list_command()


@app.command("show")
def show(name: str = name_arg()) -> None:
    """A study's question, axes, seeds, metric and cells.

    \b
    Example: study show mask_ratio
    """
    from study.catalog import show_command

    show_command(name)


@app.command("run")
def run(name: str = name_arg(), budget: Optional[str] = BudgetOpt,
        workers: int = opt(1, "worker processes on this machine", "N"),
        seeds: Optional[int] = opt(None, "seeds per cell (default: the study's)", "N"),
        storage: Optional[str] = StorageOpt, tracking_uri: Optional[str] = TrackingOpt,
        dry_run: bool = flag("print the cells, their configs and cost; run nothing", "--dry-run"),
        retry_failed: bool = flag("run failed cells again", "--retry-failed"),
        set_: Optional[list[str]] = opt(None, "override a config key that is not an axis of the study (repeatable); "
                                        "a study run with --set values is another study, named with them: "
                                        "mask_ratio [cpu] train.blr=0.01", "KEY=VALUE", "--set"),
        launcher: str = opt("local", "local: workers on this machine; slurm: one SLURM array job of --workers tasks, "
                            "submitted through submitit (the command returns)", "local|slurm"),
        procs_per_worker: int = opt(1, "training processes per trial (DDP under torchrun; gloo on CPUs)", "P"),
        gpus_per_worker: int = opt(1, "slurm: GPUs per task (sbatch --gpus-per-node); over 1, each trial trains "
                                   "under torchrun on all of them", "G"),
        partition: Optional[str] = opt(None, "slurm: sbatch --partition", "NAME"),
        time: Optional[str] = opt(None, "slurm: sbatch --time per task, minutes or D-HH:MM:SS (default 1 day; a task "
                                  "near its limit is requeued and resumes)", "T"),
        account: Optional[str] = opt(None, "slurm: sbatch --account", "NAME"),
        slurm_set: Optional[list[str]] = opt(None, "slurm: any other submitit/sbatch parameter (repeatable): "
                                             "cpus_per_task=10, mem=64G", "KEY=VALUE", "--slurm-set"),
        shared_state: Optional[str] = opt(None, "a state folder every node mounts (run folders, checkpoints; with "
                                          "SQLite stores, the stores too)", "DIR")) -> None:
    """Run every cell of a study (Optuna schedules, MLflow tracks); run again to resume. Exit 1 when runs failed or
    did not finish (the line says which, and how to retry or resume them).

    \b
    Example: study run mask_ratio --budget smoke --workers 2
    On SLURM: study run mask_ratio --launcher slurm --workers 8 --storage postgresql://... --tracking-uri http://...
    """
    from study.orchestrate import run_command
    from study.orchestrate.slurm import slurm_options

    slurm = slurm_options(launcher, workers=workers, procs_per_worker=procs_per_worker, gpus_per_worker=gpus_per_worker,
                          partition=partition, time=time, account=account, slurm_set=slurm_set or [])
    run_command(name, budget=budget, workers=workers, seeds=seeds, storage=storage, tracking_uri=tracking_uri,
                dry_run=dry_run, retry_failed=retry_failed, overrides=set_ or [], slurm=slurm,
                shared_state=shared_state, procs_per_worker=procs_per_worker)


@app.command("status")
def status(name: str = name_arg(), budget: Optional[str] = BudgetOpt, storage: Optional[str] = StorageOpt,
           set_: Optional[list[str]] = StudySetOpt) -> None:
    """Per cell: done / running (minutes so far, ETA) / failed / waiting, best so far.

    \b
    Example: study status mask_ratio
    """
    from study.orchestrate import status_command

    status_command(name, budget=budget, storage=storage, overrides=set_ or [])


@app.command("ui")
def ui(port: int = opt(5000, "port to listen on", "PORT"),
       host: str = opt("127.0.0.1", "bind address (loopback unless you say so)", "HOST"),
       tracking_uri: Optional[str] = TrackingOpt,
       screenshots: Optional[str] = opt(None, "instead of serving: start the UI on a free loopback port, save the "
                                              "latest study's runs table and one trial's metrics as PNGs in DIR "
                                              "(needs Chromium), stop", "DIR")) -> None:
    """The MLflow UI over this machine's study runs; prints a link to each study's runs table.

    \b
    Example: study ui --port 5001
    """
    if screenshots:
        from pathlib import Path

        from study.ui_screenshots import take_screenshots

        for path in take_screenshots(Path(screenshots), tracking_uri=tracking_uri):
            print(f"wrote {path}")
        return
    from study.ui import serve_ui

    serve_ui(port=port, host=host, tracking_uri=tracking_uri)


@app.command("dashboard")
def dashboard(name: str = name_arg(), budget: Optional[str] = BudgetOpt, storage: Optional[str] = StorageOpt,
              port: int = opt(8080, "port to listen on", "PORT"),
              host: str = opt("127.0.0.1", "bind address (loopback unless you say so)", "HOST")) -> None:
    """optuna-dashboard over the study's Optuna storage: trials, values, parameter importances.

    \b
    Example: study dashboard mask_ratio --port 8081
    """
    from study.ui import serve_dashboard

    serve_dashboard(name, budget=budget, storage=storage, port=port, host=host)


# ---------------------------------------------------------------- reports
@app.command("report")
def report(name: str = name_arg("a study name, or 'table2' for every finished study"),
           budget: Optional[str] = opt(None, "the budget whose runs to report (default: the latest)", "BUDGET"),
           tracking_uri: Optional[str] = TrackingOpt,
           out: Optional[str] = opt(None, "report folder (default: ./reports/<name>/ in the working directory)",
                                   "DIR"),
           set_: Optional[list[str]] = StudySetOpt) -> None:
    """Table 2-style report: report.md, table.csv, table.tex, table.html and plots (other files there are kept).

    \b
    Example: study report mask_ratio
    """
    from analysis.report import report_command

    report_command(name, budget=budget, tracking_uri=tracking_uri, out=out, overrides=set_ or [])


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # these machines have no internet; MLflow would retry
    try:
        app(args=argv, prog_name="study")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
