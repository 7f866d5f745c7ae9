"""A worker: take a trial from the study's queue, run it under its MLflow run, tell Optuna, repeat until none is left.

`study run --workers N` starts N of these as `python -m study.orchestrate.worker '<job json>'`; with one worker it
runs in the `study run` process itself. A worker on another machine is just another `study run` with the same
--storage and --tracking-uri.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from study.atomic import write_text
from study.config import load_config, parse_set
from study.orchestrate.queue import Slot, new_search_trial, pop_waiting, run_dir, slot_of, suggest_search
from study.orchestrate.storage import HEARTBEAT_S, RunFolderLock, open_storage, study_lock, study_name
from study.studies import Cell, StudySpec, load_study

TrialFn = Callable  # (cfg, run_dir, hooks) -> metrics, as study.trial.run_trial / evaluate_random_init


@dataclass
class Job:
    """Everything a worker needs; plain values so it travels as JSON to a subprocess."""
    study: str
    budget: str
    storage: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    state: str
    seeds: int | None = None
    overrides: list[str] | None = None
    threads: int = 0
    trial_fn: str = "study.trial:run_trial"                    # "module:function"; tests swap in a fake trial
    baseline_fn: str = "study.trial:evaluate_random_init"


class Hooks:
    """TrialHooks for study.trial: metrics and artifacts to the MLflow run, intermediate values to Optuna."""

    def __init__(self, run, trial: optuna.Trial, pruning: bool):
        self.run, self.trial, self.pruning, self.pruned = run, trial, pruning, False

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log_metrics(metrics, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.run.log_artifact(path, artifact_path)

    def report_intermediate(self, value: float, step: int) -> bool:
        self.trial.report(value, step)
        self.pruned = self.pruning and self.trial.should_prune()
        return self.pruned


class Heartbeat:
    """Records the trial's heartbeat while it runs, so other machines can tell a dead worker (fail_stale_trials)."""

    def __init__(self, storage, trial_id: int):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage, trial_id: int) -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a busy database must not kill the trial; the next beat tries again
                pass
            if self._stop.wait(HEARTBEAT_S):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=0) if spec.is_search else optuna.samplers.RandomSampler(seed=0)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Median pruning only where the study asks for it; never on ablation grids."""
    return optuna.pruners.MedianPruner(n_warmup_steps=1) if spec.pruning else optuna.pruners.NopPruner()


def resolve_fn(path: str) -> TrialFn:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def fn_path(fn: TrialFn) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def worker_loop(job: Job, trial_fn: TrialFn | None = None, baseline_fn: TrialFn | None = None) -> int:
    """Run trials until the queue is empty; -> how many this worker ran. KeyboardInterrupt propagates (after the
    current trial is marked interrupted, to be resumed by the next `study run`)."""
    trial_fn, baseline_fn = trial_fn or resolve_fn(job.trial_fn), baseline_fn or resolve_fn(job.baseline_fn)
    os.environ["STUDY_STATE_DIR"] = job.state  # trial.py, data caches and this worker agree on the state folder
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study(job.study)
    storage = open_storage(job.storage)
    name = study_name(job.study, job.budget)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec))
    study_id = storage.get_study_id_from_name(name)
    done = 0
    while True:
        trial = pop_waiting(study, storage, study_id)
        if trial is None and spec.is_search:
            with study_lock(storage, name, Path(job.state)):
                trial = new_search_trial(study, spec, job.seeds)
        if trial is None:
            return done
        run_one(job, spec, study, storage, trial, trial_fn, baseline_fn)
        done += 1


def run_one(job: Job, spec: StudySpec, study: optuna.Study, storage, trial: optuna.Trial, trial_fn: TrialFn,
            baseline_fn: TrialFn) -> None:
    slot = slot_of(trial, spec)
    if spec.is_search and slot.role == "trial":
        slot = Slot("trial", Cell(slot.cell.label, suggest_search(trial, spec)), slot.seed)
    rdir = run_dir(Path(job.state), job.study, job.budget, slot.key, slot.seed)
    lock = RunFolderLock(rdir)
    if not lock.acquire():  # another live process here runs this very cell: never run it twice at once
        trial.set_user_attr("failure", f"run folder {rdir} is locked by another live process")
        study.tell(trial, state=TrialState.FAIL)
        return
    try:
        with Heartbeat(storage, trial._trial_id):
            for k, v in {"host": socket.gethostname(), "pid": os.getpid(), "run_dir": str(rdir)}.items():
                trial.set_user_attr(k, v)
            _run_tracked(job, spec, study, trial, slot, rdir, trial_fn, baseline_fn)
    finally:
        lock.release()


def _run_tracked(job: Job, spec: StudySpec, study: optuna.Study, trial: optuna.Trial, slot: Slot, rdir: Path,
                 trial_fn: TrialFn, baseline_fn: TrialFn) -> None:
    from study.tracking import TrialRun
    from study.tracking_summary import update_study_summary
    from study.trial import TrialFailed

    cfg = load_config(job.budget, layers=spec.layers(slot.cell, slot.seed, job.budget),
                      overrides=parse_set(job.overrides or []))
    cfg.tracking.state_dir = job.state
    id_file = rdir / "mlflow_run_id"
    known_run = trial.user_attrs.get("mlflow_run_id") or (id_file.read_text().strip() if id_file.exists() else None)
    tags = {"study.name": job.study, "study.budget": job.budget, "study.role": slot.role, "study.cell": slot.cell.label,
            "study.cell_key": slot.cell.key, "study.is_default": str(slot.cell.is_default).lower(),
            "study.seed": str(slot.seed), "optuna.trial_number": str(trial.number), "study.run_dir": str(rdir)}
    run = TrialRun(job.tracking_uri, job.experiment_id, job.parent_run_id, tags, cfg.flat(), run_id=known_run)
    write_text(id_file, run.run_id)
    trial.set_user_attr("mlflow_run_id", run.run_id)
    hooks = Hooks(run, trial, spec.pruning)
    failure = None
    what = "random init" if slot.role == "baseline" else f"cell {slot.cell.label}, seed {slot.seed}"
    started = time.monotonic()
    print(f"[trial {trial.number}] {what}: started", flush=True)
    try:
        fn = baseline_fn if slot.role == "baseline" else trial_fn
        metrics = fn(cfg, rdir, hooks)
    except KeyboardInterrupt:
        run.end("KILLED")  # stopped, not failed: the next `study run` resumes it and this run becomes RUNNING again
        trial.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        raise
    except TrialFailed as e:
        failure = str(e)
    except Exception as e:  # a bug in one cell must not stop the study: record it, go on
        failure = repr(e)
    if failure is None and (hooks.pruned or metrics.get("pruned")):
        run.end("KILLED")
        study.tell(trial, state=TrialState.PRUNED)
        return
    if failure is None and spec.primary_metric not in metrics:
        failure = f"the trial returned no {spec.primary_metric} (it returned {', '.join(sorted(metrics)) or 'nothing'})"
    took = f"{time.monotonic() - started:.0f}s"
    if failure is not None:
        print(f"[trial {trial.number}] {what}: FAILED after {took}: {failure}", flush=True)
        trial.set_user_attr("failure", failure)
        run.end("FAILED", failure=failure)
        study.tell(trial, state=TrialState.FAIL)
        return
    run.flush()
    trial.set_user_attr("tracking_s", run.tracking_seconds)
    run.end("FINISHED")
    study.tell(trial, metrics[spec.primary_metric])
    update_study_summary(job.parent_run_id, job.tracking_uri, job.experiment_id, spec.primary_metric, spec.direction)
    print(f"[trial {trial.number}] {what}: {spec.primary_metric} = {metrics[spec.primary_metric]:.2f} in {took}", flush=True)


def main(argv: list[str]) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an entry point: no machine here reaches the internet
    job = Job(**json.loads(argv[0]))
    try:
        worker_loop(job)
    except KeyboardInterrupt:
        sys.exit(130)


def job_json(job: Job) -> str:
    return json.dumps(asdict(job))


if __name__ == "__main__":
    main(sys.argv[1:])
