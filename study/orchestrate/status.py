"""`study status`: per (cell, seed) done / running / failed / waiting, the metric, best so far, ETA. Reads Optuna only."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from study.config import state_dir
from study.orchestrate.queue import BASELINE_KEY, is_interrupted, latest_by_identity, planned_slots, worker_gone
from study.studies import StudySpec

STATE_WORDS = {"COMPLETE": "done", "RUNNING": "running", "WAITING": "waiting", "PRUNED": "pruned", "FAIL": "failed"}


def status(spec: StudySpec, budget: str | None, storage: str | None) -> None:
    import optuna

    from study.orchestrate.storage import check_storage_url, default_storage_url, open_storage

    url = storage or default_storage_url(state_dir())
    check_storage_url(url)
    if url.startswith("sqlite:///") and not __import__("pathlib").Path(url.removeprefix("sqlite:///")).exists():
        print(f"study {spec.name}: no runs yet (no {url}); start it with `study run {spec.name}`")
        return
    st = open_storage(url)
    names = [n for n in optuna.get_all_study_names(st) if n.startswith(f"{spec.name} [")]
    if budget is None and names:
        # the budget whose study was touched last
        budget = max(names, key=lambda n: max((t.datetime_start or datetime.min for t in optuna.load_study(
            study_name=n, storage=st).get_trials(deepcopy=False)), default=datetime.min))[len(spec.name) + 2:-1]
    if budget is None or f"{spec.name} [{budget}]" not in names:
        print(f"study {spec.name}: no runs yet{f' at budget {budget}' if budget else ''}; start it with `study run {spec.name}`")
        return
    print_status(spec, budget, st)


def print_status(spec: StudySpec, budget: str, st, seeds: int | None = None) -> bool:
    """Print the table; -> True when every planned (cell, seed) is done (or pruned)."""
    import optuna

    study = optuna.load_study(study_name=f"{spec.name} [{budget}]", storage=st)
    trials = study.get_trials(deepcopy=False)
    latest = latest_by_identity(trials)
    planned = [(s.key, s.seed) for s in planned_slots(spec, seeds)]
    rows = [latest.get(ident) for ident in planned]
    if spec.is_search:
        rows += [t for ident, t in latest.items() if t.user_attrs.get("role") == "trial"]
    done = [t for t in rows if t is not None and t.state.name in ("COMPLETE", "PRUNED")]
    trials_done = [t for t in done if t.state.name == "COMPLETE" and t.user_attrs.get("role") == "trial"]
    best = (max if spec.direction == "maximize" else min)(trials_done, key=lambda t: t.value, default=None)
    table = Table(title=escape(f"{spec.name} [{budget}]: {spec.primary_metric} ({spec.direction})"))
    for col in ("cell", "seed", "state", spec.primary_metric, "minutes", "trial", "note"):
        table.add_column(col)
    for ident, t in zip(planned + [None] * (len(rows) - len(planned)), rows):
        if t is None:
            table.add_row(_label(spec, ident), str(ident[1]), "not queued", "", "", "", "")
            continue
        gone = worker_gone(t)  # killed without a word (kill -9, power loss): the next `study run` resumes it
        word = "interrupted" if is_interrupted(t) or gone else STATE_WORDS.get(t.state.name, t.state.name.lower())
        minutes = f"{t.duration.total_seconds() / 60:.1f}" if t.duration else ""
        value = f"{t.value:.2f}" if t.value is not None else ""
        note = t.user_attrs.get("failure", "") or ("best" if t is best else "")
        table.add_row(t.user_attrs.get("cell", "?"), str(t.user_attrs.get("seed", "")), word, value, minutes,
                      str(t.number), note[:80])
    remaining = len([t for t in rows if t is None or t.state.name in ("WAITING", "RUNNING") or is_interrupted(t)])
    # the random-init baseline only evaluates: its minutes say nothing about a training cell's
    durations = [t.duration.total_seconds() for t in done if t.duration and t.user_attrs.get("role") != "baseline"]
    running_workers = len({(t.user_attrs.get("host"), t.user_attrs.get("pid")) for t in rows
                           if t is not None and t.state.name == "RUNNING" and not worker_gone(t)}) or 1
    con = Console()
    con.print(table)
    summary = f"{len(done)}/{len(rows)} done"
    if best is not None:
        summary += f"; best so far: {best.user_attrs.get('cell')} seed {best.user_attrs.get('seed')} = {best.value:.2f}"
    if remaining and durations:
        eta = sum(durations) / len(durations) * remaining / running_workers
        summary += f"; ETA {eta / 60:.1f} min ({remaining} left, {running_workers} worker(s))"
    con.print(summary)
    from study.orchestrate.slurm import print_slurm_jobs

    print_slurm_jobs(study)  # the SLURM job(s) of `study run --launcher slurm` and what each task runs
    return remaining == 0 and not any(t is not None and t.state.name == "FAIL" for t in rows)


def _label(spec: StudySpec, ident: tuple[str, int]) -> str:
    if ident[0] == BASELINE_KEY:
        return "random init"
    return next((c.label for c in spec.cells() if c.key == ident[0]), ident[0])
