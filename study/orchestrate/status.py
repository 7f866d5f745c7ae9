"""`study status`: per (cell, seed) done / running / failed / waiting, the metric, minutes, ETA, best so far.
Reads Optuna only."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from study.config import state_dir
from rich.markup import escape

from study.console import console, table
from study.orchestrate.queue import BASELINE_KEY, is_dead, is_interrupted, latest_by_identity, planned_slots
from study.studies import StudySpec, canonical_overrides, parse_stored_name

STATE_WORDS = {"COMPLETE": "done", "RUNNING": "running", "WAITING": "waiting", "PRUNED": "pruned", "FAIL": "failed"}


def status(spec: StudySpec, budget: str | None, storage: str | None, overrides: list[str]) -> None:
    import optuna

    from study.orchestrate.storage import check_storage_url, default_storage_url, open_storage

    url, sets = storage or default_storage_url(state_dir()), canonical_overrides(overrides)
    check_storage_url(url)
    exists = not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()  # never create it
    st = open_storage(url) if exists else None
    names = [n for n in (optuna.get_all_study_names(st) if st else []) if (p := parse_stored_name(n))
             and p[0] == spec.name and p[2] == " ".join(sets) and p[1] == (budget or p[1])]
    if not names:
        hint = " ".join([spec.name, *(f"--set {s}" for s in sets)] + ([f"--budget {budget}"] if budget else []))
        return print(f"study {spec.name}: no runs yet; start it with `study run {hint}`")
    # the budget whose study was touched last
    name = max(names, key=lambda n: max((t.datetime_start or datetime.min for t in optuna.load_study(
        study_name=n, storage=st).get_trials(deepcopy=False)), default=datetime.min))
    print_status(spec, name, st)


def print_status(spec: StudySpec, name: str, st, seeds: int | None = None) -> list[tuple[str, int, str]]:
    """Print the table; -> (cell, seed, state word) per planned (cell, seed) and search trial."""
    import optuna

    study = optuna.load_study(study_name=name, storage=st)
    trials, seeds = study.get_trials(deepcopy=False), seeds or study.user_attrs.get("seeds")
    spec = spec.select(study.user_attrs.get("cells"))  # the cells the last `study run --cells` asked for
    latest = latest_by_identity(trials)
    planned = [(s.key, s.seed) for s in planned_slots(spec, seeds)]
    rows = [(ident, latest.get(ident)) for ident in planned]
    rows += [(ident, t) for ident, t in latest.items() if spec.is_search and t.user_attrs.get("role") == "trial"]
    done = [t for _, t in rows if t is not None and t.state.name in ("COMPLETE", "PRUNED")]
    trials_done = [t for t in done if t.state.name == "COMPLETE" and t.user_attrs.get("role") == "trial"]
    best = (max if spec.direction == "maximize" else min)(trials_done, key=lambda t: t.value, default=None)
    out = table(escape(f"{name}: {spec.primary_metric} ({spec.direction})"), ["cell", "seed", "state"],
                [spec.primary_metric, "minutes", "trial"])
    out.add_column("note", overflow="fold")
    words, running = [], set()
    for ident, t in rows:
        a = t.user_attrs if t is not None else {}
        # killed without a word (kill -9, power loss): interrupted; the next `study run` resumes it
        word = ("not queued" if t is None else "interrupted" if is_interrupted(t) or is_dead(t)
                else STATE_WORDS[t.state.name])
        words.append((a.get("cell") or _label(spec, ident), ident[1], word))
        if word == "running":
            running.add((a.get("host"), a.get("pid")))
        note = _eta(a) if word == "running" else a.get("failure", "") or ("best" if t is best else "")
        out.add_row(escape(words[-1][0]), str(ident[1]), word, f"{t.value:.2f}" if t and t.value is not None else "",
                    _minutes(t) if t else "", str(t.number) if t else "", escape(note))
    left = sum(1 for _, _, w in words if w in ("waiting", "running", "interrupted", "not queued"))
    # the random-init baseline only evaluates: its minutes say nothing about a training cell's
    durations = [t.duration.total_seconds() for t in done if t.duration and t.user_attrs.get("role") != "baseline"]
    con = console()
    con.print(out)
    summary = f"{len(done)}/{len(rows)} done"
    if best is not None:
        summary += f"; best so far: {best.user_attrs.get('cell')} seed {best.user_attrs.get('seed')} = {best.value:.2f}"
    if left and durations:
        eta = sum(durations) / len(durations) * left / max(1, len(running))
        summary += f"; ETA {eta / 60:.1f} min ({left} left, {max(1, len(running))} worker(s))"
    con.print(summary)
    from study.orchestrate.slurm import print_slurm_jobs

    print_slurm_jobs(study)  # the SLURM job(s) of `study run --launcher slurm` and what each task runs
    return words


def _minutes(t) -> str:
    """Finished: how long it took; running: minutes so far."""
    took = t.duration or (datetime.now() - t.datetime_start if t.datetime_start else None)
    return f"{took.total_seconds() / 60:.1f}" if took else ""


def _eta(attrs: dict) -> str:
    """What the worker last wrote (`worker.Hooks`): the share trained and the time left, evaluation included."""
    eta = attrs.get("eta")
    if not eta:
        return "starting"
    left = max(0.0, eta["left_s"] - (time.time() - eta["at"]))
    return f"{100 * eta['trained']:.0f}% trained; ETA {left / 60:.1f} min"


def _label(spec: StudySpec, ident: tuple[str, int]) -> str:
    if ident[0] == BASELINE_KEY:
        return "random init"
    return next((c.label for c in spec.cells() if c.key == ident[0]), ident[0])
