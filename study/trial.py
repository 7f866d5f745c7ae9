"""One trial of a study: `study train` followed by its evaluations, reported through hooks (the scheduler's MLflow run).

The scheduler owns Optuna and MLflow; this module owns what a trial does. A trial resumes from its run folder, so a cell
interrupted anywhere (training or evaluation) continues where it stopped when it is taken again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

from study.config import RunConfig, to_toml
from study.errors import UserError


class TrialHooks(Protocol):
    """May also carry `progress`: the options of the training progress line (label, rich), as `train` takes them."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def report_intermediate(self, value: float, step: int) -> bool: ...


class TrialFailed(Exception):
    """The trial cannot finish (non-finite loss, unreadable data): the reason is one line; the study goes on."""


def evaluate_all(encoder, cfg: RunConfig, out_dir: Path, hooks: TrialHooks | None, step: int) -> dict[str, float]:
    """Every dataset of eval.datasets -> {'davis.jf_mean': ..., 'jhmdb.pck_0.1': ...} in percent."""
    from study.data.default_sets import dataset_root
    from study.evaluate.run import evaluate_dataset

    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    for name in cfg.eval.datasets:
        summary = evaluate_dataset(encoder, name, dataset_root(cfg, name), cfg.eval, out_dir / name)
        metrics.update({f"{name}.{k}": float(v) for k, v in summary.items()})
        if hooks:
            for sheet in sorted((out_dir / name / "sheets").glob("contact_*.png"))[:4]:
                hooks.log_artifact(sheet, f"eval/{name}")
            if (out_dir / name / "summary.json").exists():
                hooks.log_artifact(out_dir / name / "summary.json", f"eval/{name}")
    metrics["eval.wall_s"] = time.perf_counter() - t0
    if hooks:
        hooks.log_metrics(metrics, step)
    return metrics


def primary_value(metrics: dict[str, float], cfg: RunConfig) -> float:
    from study.metrics import PRIMARY

    return metrics[PRIMARY[cfg.eval.datasets[0]]]


def run_trial(cfg: RunConfig, run_dir: Path, hooks: TrialHooks) -> dict[str, float]:
    """Train (resuming from run_dir), evaluate, log; -> final metrics. TrialFailed on a non-finite loss."""
    from study.train.engine import NonFiniteLoss, train

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(cfg))
    hooks.log_artifact(run_dir / "config.toml")
    periodic = None
    if cfg.eval.every_epochs > 0:
        def intermediate(model, step: int, epoch: float) -> bool:
            metrics = evaluate_all(model, cfg, run_dir / "eval-intermediate" / f"step{step}", hooks, step)
            return hooks.report_intermediate(primary_value(metrics, cfg), step)
        periodic = (max(1, _steps_for_epochs(cfg, cfg.eval.every_epochs)), intermediate)
    from study.train.ddp import procs_per_trial, train_in_subprocess

    procs = procs_per_trial()
    if procs > 1 and periodic:
        raise TrialFailed(f"eval.every_epochs > 0 (intermediate evaluations) needs one process per trial, not {procs}; "
                          "set eval.every_epochs = 0 or drop --procs-per-worker / --gpus-per-worker")
    try:
        if procs > 1:  # DDP: torchrun in a subprocess on this run folder; evaluation stays here (study/train/ddp.py)
            result = train_in_subprocess(cfg, run_dir, procs, on_metrics=hooks.log_metrics)
        else:
            result = train(cfg, run_dir, resume=True, on_metrics=hooks.log_metrics, periodic=periodic,
                           progress=getattr(hooks, "progress", False))
    except (UserError, NonFiniteLoss) as e:  # bad input found late, or a run that diverged: the study goes on
        raise TrialFailed(str(e)) from None
    if result.pruned:
        return {"train.steps": float(result.steps), "pruned": 1.0}
    if (run_dir / "recon.png").exists():
        hooks.log_artifact(run_dir / "recon.png")
    final = {"train.final_loss": result.losses[-1] if result.losses else float("nan"), "train.steps": float(result.steps),
             "train.wall_s": result.wall_s, "train.resumed_from": float(result.resumed_from),
             "data.skipped_videos": float(len(result.skipped_videos))}
    hooks.log_metrics(final, result.steps)
    metrics = {**final, **evaluate_all(result.model, cfg, run_dir / "eval", hooks, result.steps)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if cfg.tracking.export_encoder:
        from study.model import save_timm_export

        path = run_dir / "encoder_timm.pt"
        save_timm_export(result.model, path)
        hooks.log_artifact(path)
    return metrics


def evaluate_random_init(cfg: RunConfig, out_dir: Path, hooks: TrialHooks) -> dict[str, float]:
    """The baseline row: the same encoder, untrained (seeded), through the same evaluations."""
    import torch

    from study.model import build_model

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    return evaluate_all(model, cfg, out_dir, hooks, 0)


def _steps_for_epochs(cfg: RunConfig, epochs: float) -> int:
    """Optimizer steps in `epochs` effective epochs for this config (needs the training set's size)."""
    from study.train.data import training_videos
    from study.train.state import Schedule

    n = len(training_videos(cfg))
    sched = Schedule(n, cfg.data.repeated_sampling, cfg.train.batch_size, cfg.train.accum_iter, 1, cfg.train.epochs)
    return round(epochs * sched.steps_per_epoch)
