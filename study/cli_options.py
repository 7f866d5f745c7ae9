"""The CLI's shared option builders: every option gets help and a metavar, so help shows no Python types."""

from __future__ import annotations

import typer

from study.config import ModelConfig

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
