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

from study.cli_bench import bench_app
from study.cli_data import data_app
from study.cli_options import (RECIPE, BudgetOpt, SetOpt, StorageOpt, StudySetOpt, TrackingOpt, flag, name_arg,
                               opt)
from study.errors import UserError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True, rich_markup_mode=None)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

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


# ---------------------------------------------------------------- data


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
        cells: Optional[str] = opt(None, "run only these cells, by label (comma-separated, as `study show` lists "
                                   "them): --cells 0.5,0.95", "LABEL,..."),
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
                shared_state=shared_state, procs_per_worker=procs_per_worker,
                cells=cells)


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
                                              "(needs Chromium), stop", "DIR"),
       study: Optional[str] = opt(None, "with --screenshots: this study's runs (default: the latest study)",
                                  "NAME")) -> None:
    """The MLflow UI over this machine's study runs; prints a link to each study's runs table.

    \b
    Example: study ui --port 5001
    """
    if study and not screenshots:
        raise UserError("--study names the study --screenshots photographs; add --screenshots DIR")
    if screenshots:
        from pathlib import Path

        from study.ui_screenshots import take_screenshots

        for path in take_screenshots(Path(screenshots), tracking_uri=tracking_uri, study=study):
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
