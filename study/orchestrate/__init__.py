"""Studies scheduled by Optuna and tracked by MLflow: `study run / list / show / status`.

commands.py  the CLI entry points (validate first, then open the stores)
storage.py   Optuna storage (SQLite or PostgreSQL RDB), study-wide lock, run-folder lock
queue.py     which (cell, seed) each trial runs; enqueue once, resume, retry, atomic take
worker.py    the worker loop: a trial under its MLflow run, then tell Optuna
status.py    `study status`;  plan.py  `study run --dry-run`
"""

from study.orchestrate.commands import list_command, run_command, show_command, status_command

__all__ = ["list_command", "run_command", "show_command", "status_command"]
