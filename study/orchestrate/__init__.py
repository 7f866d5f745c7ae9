"""Studies scheduled by Optuna and tracked by MLflow: `study run / status`.

commands.py  the CLI entry points (validate first, then open the stores), the local launcher
storage.py   Optuna storage (SQLite or PostgreSQL RDB), the study lock, file locks
queue.py     which (cell, seed) each trial runs; enqueue once, resume, retry, dead workers' trials
worker.py    the worker loop: Optuna takes and records each trial, run under its MLflow run
status.py    `study status`;  plan.py  `study run --dry-run`
"""

from study.orchestrate.commands import run_command, status_command

__all__ = ["run_command", "status_command"]
