"""The queue of a study in Optuna: which (cell, seed) each trial runs, enqueueing each exactly once, resuming
interrupted ones, retrying failed ones, and telling a dead worker's trial from a live one.

Why not GridSampler: with several workers it runs tail cells twice and never retries a failed cell. Instead every
(cell, seed) is a trial queued with `enqueue_trial`, whose user attrs say what it runs; `reconcile` runs under the
study lock, so two `study run`s (or two machines) never enqueue the same cell twice. States: WAITING -> RUNNING ->
COMPLETE | PRUNED | FAIL. A FAIL with a `failure` attr failed for real (rerun only with --retry-failed); one without
was interrupted (kill, Ctrl-C, heartbeat lost) and is enqueued again to resume: same run folder, same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.config import RunConfig
from study.config_load import load_config, parse_set
from study.orchestrate.storage import GRACE_S, held_elsewhere
from study.studies import Cell, StudySpec

BASELINE_KEY = "baseline"
CARRIED = ("role", "cell_key", "cell", "is_default", "seed", "mlflow_run_id")
BOOKKEEPING = ("host", "pid", "run_dir")  # written by the worker right after it takes a trial


@dataclass(frozen=True)
class Slot:
    """What one trial runs: a trial of a (cell, seed), or the random-init baseline."""
    role: str
    cell: Cell
    seed: int

    @property
    def key(self) -> str:
        return BASELINE_KEY if self.role == "baseline" else self.cell.key

    def user_attrs(self) -> dict:
        return {"role": self.role, "cell_key": self.key, "cell": self.cell.label,
                "is_default": self.cell.is_default, "seed": self.seed}

    def config(self, spec: StudySpec, budget: str, overrides: list[str]) -> RunConfig:
        return load_config(budget, layers=spec.layers(self.cell, self.seed, budget), overrides=parse_set(overrides))


def baseline_cell(spec: StudySpec) -> Cell:
    """The study's default config, untrained."""
    return Cell(label="random init", overrides=dict(spec.default))


def planned_slots(spec: StudySpec, seeds: int | None) -> list[Slot]:
    """The baseline at every seed a cell runs (so that the interval against it counts random init's own spread, not
    only the cell's), then every (cell, seed) of a grid; a search's trials (first seed) come from its sampler."""
    seed_list = list(range(seeds)) if seeds else spec.seeds
    slots = [Slot("baseline", baseline_cell(spec), s) for s in (seed_list[:1] if spec.is_search else seed_list)]
    if not spec.is_search:
        slots += [Slot("trial", cell, seed) for cell, seed in spec.trials(seeds)]
    return slots


def slot_of(trial: optuna.Trial | FrozenTrial, spec: StudySpec, seeds: int | None) -> Slot:
    """What a taken trial runs; a fresh trial of a search gets its point from the sampler here."""
    a = trial.user_attrs
    if "role" not in a:
        overrides = suggest_search(trial, spec)
        seed = (list(range(seeds)) if seeds else spec.seeds)[0]
        slot = Slot("trial", Cell(", ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" for k, v in overrides.items()),
                                  overrides), seed)
        for k, v in slot.user_attrs().items():
            trial.set_user_attr(k, v)
        return slot
    if a["role"] == "baseline":
        return Slot("baseline", baseline_cell(spec), int(a["seed"]))
    overrides = suggest_search(trial, spec) if spec.is_search else json.loads(a["cell_key"])
    return Slot("trial", Cell(a["cell"], overrides, bool(a["is_default"])), int(a["seed"]))


def suggest_search(trial: optuna.Trial, spec: StudySpec) -> dict:
    """The search's params (the fixed ones when the trial was enqueued to resume or retry)."""
    return {p.key: (trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log) if p.integer
                    else trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)) for p in spec.search}


def run_dir(state: Path, study: str, budget: str, overrides: list[str], key: str, seed: int) -> Path:
    """Deterministic per (study, budget, --set values, cell, seed): a resumed trial finds its checkpoint here."""
    sets, cell = (hashlib.sha1(text.encode()).hexdigest()[:10] for text in (" ".join(overrides), key))
    return state / "runs" / (f"{study}-{budget}-{sets}" if overrides else f"{study}-{budget}") / f"{cell}-seed{seed}"


def latest_by_identity(trials: list[FrozenTrial]) -> dict[tuple[str, int], FrozenTrial]:
    """The newest trial of each (cell, seed): older ones were interrupted or failed and are superseded."""
    return {(t.user_attrs["cell_key"], int(t.user_attrs["seed"])): t
            for t in sorted(trials, key=lambda t: t.number) if "cell_key" in t.user_attrs}


def is_interrupted(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and "failure" not in t.user_attrs


def is_dead(t: FrozenTrial, no_live_worker: bool = False) -> bool:
    """A RUNNING trial whose worker is gone. Another machine's: Optuna's stale heartbeat (`fail_stale_trials`)."""
    a = t.user_attrs
    if t.state != TrialState.RUNNING:
        return False
    if "run_dir" in a:  # on this machine the run-folder lock tells at once (the kernel dropped it)
        return a.get("host") == socket.gethostname() and not held_elsewhere(Path(a["run_dir"]) / ".lock")
    # taken, but its worker died before writing where it runs: Optuna cannot write both in one transaction, and
    # its stale-heartbeat check skips a trial that never beat. Dead at once when no worker of the study is alive
    # here (SQLite: all workers are here), else once it is older than the grace period.
    age = (datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 0.0
    return no_live_worker or age > GRACE_S


def reconcile(study: optuna.Study, spec: StudySpec, seeds: int | None, retry_failed: bool,
              no_live_worker: bool = False) -> dict[str, int]:
    """Under the study lock: fail dead workers' trials, enqueue what is missing, resume what was interrupted, retry
    failures if asked."""
    optuna.storages.fail_stale_trials(study)  # another machine's worker stopped beating: FAIL, i.e. interrupted
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_dead(t, no_live_worker):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    latest = latest_by_identity(study.get_trials(deepcopy=False))
    planned = {(s.key, s.seed): s for s in planned_slots(spec, seeds)}
    counts = {"new": 0, "resumed": 0, "retried": 0}
    for ident, slot in planned.items():
        if ident not in latest:
            study.enqueue_trial({}, user_attrs=slot.user_attrs())
            counts["new"] += 1
    for ident, t in latest.items():
        if (spec.is_search and t.user_attrs.get("role") == "trial" or ident in planned) and (
                is_interrupted(t) or (retry_failed and t.state == TrialState.FAIL)):
            carried = {k: t.user_attrs[k] for k in CARRIED if k in t.user_attrs}
            study.enqueue_trial(t.params, user_attrs={**carried, "resumes": t.number})
            counts["resumed" if is_interrupted(t) else "retried"] += 1
    return counts


def search_has_room(study: optuna.Study, spec: StudySpec) -> bool:
    """Under the study lock: fewer search trials than asked, counting those just taken (no point yet)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("role") != BASELINE_KEY]
    pending = sum(1 for t in trials if "cell_key" not in t.user_attrs and not t.state.is_finished())
    return spec.is_search and len(latest_by_identity(trials)) + pending < spec.search_trials
