"""`study list` and `study show`: the studies in experiments/, for people. They read study files only (no Optuna,
no MLflow), so they answer at once."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape

from study.console import console, table
from study.errors import UserError
from study.studies import load_study, study_names


def list_command() -> None:
    out = table(escape("studies in " + str(Path(os.environ.get("STUDY_EXPERIMENTS") or "experiments"))),
                ["study", "table", "question", "factors"], ["cells", "seeds", "trials"])
    for n in study_names():
        try:
            spec = load_study(n)
        except UserError as e:
            out.add_row(n, "", f"[red]{e}[/red]", "", "", "", "")
            continue
        cells = f"search x{spec.search_trials}" if spec.is_search else str(len(spec.cells()))
        trials = spec.search_trials if spec.is_search else len(spec.trials())
        out.add_row(n, spec.table, spec.title, ", ".join(spec.factor_keys), cells, str(len(spec.seeds)), str(trials))
    console().print(out)


def show_command(name: str) -> None:
    spec, con = load_study(name), console()
    con.print(f"[bold]{spec.name}[/bold]: {spec.title}" + (f"  (paper Table {spec.table})" if spec.table else ""))
    con.print(spec.question)
    con.print(f"metric: {spec.primary_metric} ({spec.direction}); seeds: {spec.seeds}; evaluations: "
              f"{', '.join(spec.evaluations)}; pruning: {'median' if spec.pruning else 'off'}")
    if spec.base:
        con.print("study base: " + ", ".join(f"{k}={v}" for k, v in spec.base.items()))
    if spec.is_search:
        con.print(f"TPE search, {spec.search_trials} trials over: " + ", ".join(
            f"{p.key} in [{p.low}, {p.high}]{' (log)' if p.log else ''}" for p in spec.search))
        return
    out = table(f"cells of {spec.name}", ["cell", "overrides"], ["default"])
    for cell in spec.cells():
        out.add_row(cell.label, ", ".join(f"{k}={v}" for k, v in cell.overrides.items()), "yes" if cell.is_default else "")
    con.print(out)
