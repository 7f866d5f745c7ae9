"""The queue of a study in Optuna: which (cell, seed) each trial runs, enqueueing each exactly once, resuming
interrupted ones, retrying failed ones, and taking a WAITING trial atomically.

Why not GridSampler: with several workers it runs tail cells twice and never retries a failed cell (DESIGN.md).
Instead every (cell, seed) is an enqueued trial whose user attrs say what it runs; `reconcile` runs under the
study-wide lock, so two `study run`s (or two machines) never enqueue the same cell twice.
A trial's states: WAITING -> RUNNING -> COMPLETE | PRUNED | FAIL. A FAIL with a `failure` attr failed for real
(rerun only with --retry-failed); a FAIL without one was interrupted (worker killed, Ctrl-C, heartbeat lost) and
is enqueued again at once as a new trial that `resumes` it: same run folder (checkpoint), same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from study.orchestrate.storage import RunFolderLock
from study.studies import Cell, StudySpec

BASELINE_KEY = "baseline"
CARRIED = ("role", "cell_key", "cell", "is_default", "seed", "mlflow_run_id")


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


def baseline_cell(spec: StudySpec) -> Cell:
    """The study's default config, untrained."""
    return Cell(label="random init", overrides=dict(spec.default))


def planned_slots(spec: StudySpec, seeds: int | None) -> list[Slot]:
    """The baseline, then every (cell, seed) of a grid; a search's trials come from its sampler instead."""
    first_seed = (list(range(seeds)) if seeds else spec.seeds)[0]
    slots = [Slot("baseline", baseline_cell(spec), first_seed)]
    if not spec.is_search:
        slots += [Slot("trial", cell, seed) for cell, seed in spec.trials(seeds)]
    return slots


def slot_of(trial: optuna.Trial | FrozenTrial, spec: StudySpec) -> Slot:
    a = trial.user_attrs
    if a["role"] == "baseline":
        return Slot("baseline", baseline_cell(spec), int(a["seed"]))
    return Slot("trial", Cell(a["cell"], json.loads(a["cell_key"]), bool(a["is_default"])), int(a["seed"]))


def run_dir(state: Path, study: str, budget: str, key: str, seed: int) -> Path:
    """Deterministic per (study, budget, cell, seed): a resumed trial finds its checkpoint here."""
    return state / "runs" / f"{study}-{budget}" / f"{hashlib.sha1(key.encode()).hexdigest()[:10]}-seed{seed}"


def identity(t: FrozenTrial) -> tuple[str, int] | None:
    a = t.user_attrs
    return (a["cell_key"], int(a["seed"])) if "cell_key" in a else None


def latest_by_identity(trials: list[FrozenTrial]) -> dict[tuple[str, int], FrozenTrial]:
    """The newest trial of each (cell, seed): older ones were interrupted or failed and are superseded."""
    out: dict[tuple[str, int], FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if (ident := identity(t)) is not None:
            out[ident] = t
    return out


def is_interrupted(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and "failure" not in t.user_attrs


def worker_gone(t: FrozenTrial) -> bool:
    """A RUNNING trial of this host whose worker died (its run-folder lock is free: the kernel dropped it)."""
    a = t.user_attrs
    return (t.state == TrialState.RUNNING and a.get("host") == socket.gethostname() and "run_dir" in a
            and not RunFolderLock(Path(a["run_dir"])).held_elsewhere())


def fail_dead_local_trials(study: optuna.Study, storage) -> int:
    """RUNNING trials of this host whose worker is gone -> interrupted, at once (no waiting for the heartbeat)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_gone(t):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", "worker gone")  # _trial_id: Optuna has no public id
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                n += 1
        except UpdateFinishedTrialError:
            pass
    return n


def enqueue(study: optuna.Study, attrs: dict, params: dict | None = None, resumes: FrozenTrial | None = None) -> None:
    attrs = dict(attrs)
    if resumes is not None:
        attrs["resumes"] = resumes.number
    study.enqueue_trial(params or {}, user_attrs=attrs)


def reconcile(study: optuna.Study, storage, spec: StudySpec, seeds: int | None, retry_failed: bool) -> dict[str, int]:
    """Under the study lock: enqueue what is missing, resume what was interrupted, retry failures if asked."""
    optuna.storages.fail_stale_trials(study)  # heartbeat lost (any machine): marked interrupted by the callback
    fail_dead_local_trials(study, storage)
    latest = latest_by_identity(study.get_trials(deepcopy=False))
    planned = {(s.key, s.seed): s for s in planned_slots(spec, seeds)}
    counts = {"new": 0, "resumed": 0, "retried": 0}
    for ident, slot in planned.items():
        if ident not in latest:
            enqueue(study, slot.user_attrs())
            counts["new"] += 1
    for ident, t in latest.items():
        if spec.is_search and t.user_attrs.get("role") == "trial" or ident in planned:
            if is_interrupted(t) or (retry_failed and t.state == TrialState.FAIL):
                carried = {k: t.user_attrs[k] for k in CARRIED if k in t.user_attrs}
                enqueue(study, carried, t.params, resumes=t)
                counts["resumed" if is_interrupted(t) else "retried"] += 1
    return counts


def pop_waiting(study: optuna.Study, storage, study_id: int) -> optuna.Trial | None:
    """Take one WAITING trial; the storage's RUNNING transition is atomic (row lock / BEGIN IMMEDIATE)."""
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


def new_search_trial(study: optuna.Study, spec: StudySpec, seeds: int | None) -> optuna.Trial | None:
    """Under the study lock: a fresh trial from the sampler while the search has fewer than search_trials."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("role") == "trial"]
    if len(latest_by_identity(trials)) + sum(1 for t in trials if "cell_key" not in t.user_attrs) >= spec.search_trials:
        return None
    trial = study.ask()
    overrides = suggest_search(trial, spec)
    label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" for k, v in overrides.items())
    seed = (list(range(seeds)) if seeds else spec.seeds)[0]
    for k, v in Slot("trial", Cell(label, overrides), seed).user_attrs().items():
        trial.set_user_attr(k, v)
    return trial


def suggest_search(trial: optuna.Trial, spec: StudySpec) -> dict:
    """The search's params (fixed ones when the trial was enqueued to resume or retry)."""
    out = {}
    for p in spec.search:
        if p.integer:
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
    return out
