"""A worker: take a trial from the study's queue, run it under its MLflow run, repeat until nothing is left.

Each trial runs through `study.optimize(n_trials=1)`: Optuna takes it (`ask` pops a WAITING trial atomically),
beats its heartbeat, fails stale trials of dead workers elsewhere, records COMPLETE / PRUNED / FAIL (Ctrl-C too).
Kept here, as Optuna cannot do it for this product: the take under the study lock (`ask` makes a trial of its own
when the queue empties between a look and a take, which a grid must never get); the run-folder lock (a cell never
runs twice at once; a kill -9 here is seen at once); the worker lock (while a worker of the study lives, a taken
trial without bookkeeping is not dead); the MLflow run, reopened on resume; a failure's reason and traceback.
`study run --workers N` starts N of these as `python -m study.orchestrate.worker '<job json>'` (one runs in-process).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from study.atomic import write_text
from study.errors import UserError
from study.orchestrate.queue import BOOKKEEPING, reconcile, run_dir, search_has_room, slot_of
from study.orchestrate.storage import file_lock, lock_path, open_storage, study_lock
from study.studies import StudySpec, canonical_overrides, load_study, stored_name

log = logging.getLogger(__name__)
ETA_EVERY_S = 30.0  # a running trial's progress (for `study status`) is written to Optuna at most this often
TRACEBACK_CHARS = 8000  # the tail kept in the trial's user attr (MySQL's TEXT holds 64 KB; the whole is in failure.txt)


def threads_per_worker(workers: int) -> int:
    """torch threads for each of `workers` processes side by side on this machine (0: torch's default, one process):
    they share the cores, as two 2-thread processes on 2 cores run several times slower than two 1-thread ones."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0


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
    plain_progress: bool = False                               # several workers share one terminal: no rich bars
    cells: list[str] | None = None                             # `study run --cells`: these cells only

    @property
    def identity(self) -> list[str]:
        """The --set values that make this study another study (see `studies.stored_name`)."""
        return canonical_overrides(self.overrides or [])

    @property
    def name(self) -> str:
        return stored_name(self.study, self.budget, self.identity)


class Hooks:
    """TrialHooks: metrics, artifacts to the MLflow run; intermediate values, progress to Optuna; the progress line."""

    def __init__(self, run, trial: optuna.Trial, pruning: bool, epochs: float, eval_s: float, progress: dict):
        self.run, self.trial, self.pruning, self.pruned = run, trial, pruning, False
        self.epochs, self.eval_s, self.progress = epochs, eval_s, progress
        self._first: tuple[float, float] | None = None  # (epoch, time) when this session's training started
        self._last_eta = 0.0

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log_metrics(metrics, step)
        now, epoch = time.time(), metrics.get("train.epoch")
        if epoch is None:
            return
        self._first = self._first or (epoch, now)
        if now - self._last_eta >= ETA_EVERY_S and epoch > self._first[0]:  # for `study status`: evaluation included
            self._last_eta = now
            left = (self.epochs - epoch) * (now - self._first[1]) / (epoch - self._first[0]) + self.eval_s
            self.trial.set_user_attr("eta", {"at": now, "trained": round(epoch / self.epochs, 3), "left_s": round(left)})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.run.log_artifact(path, artifact_path)

    def report_intermediate(self, value: float, step: int) -> bool:
        self.trial.report(value, step)
        self.pruned = self.pruning and self.trial.should_prune()
        return self.pruned


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=0) if spec.is_search else optuna.samplers.RandomSampler(seed=0)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Median pruning only where the study asks for it; never on ablation grids."""
    return optuna.pruners.MedianPruner(n_warmup_steps=1) if spec.pruning else optuna.pruners.NopPruner()


def resolve_fn(path: str) -> Callable:
    """'module:function' -> the trial function: (cfg, run_dir, hooks) -> metrics, as study.trial.run_trial."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def fn_path(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def worker_loop(job: Job) -> int:
    """Run trials until the queue is empty; -> how many this worker ran. KeyboardInterrupt propagates (Optuna has
    marked the current trial FAIL without a reason: interrupted, resumed by the next `study run`)."""
    os.environ["STUDY_STATE_DIR"] = job.state  # trial.py, data caches and this worker agree on the state folder
    if job.threads:  # torch reads it when first imported (by the trial: a worker need not import torch itself)
        os.environ["OMP_NUM_THREADS"] = str(job.threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is logged below, with its cell
    spec, storage, state = load_study(job.study).select(job.cells), open_storage(job.storage), Path(job.state)
    study = optuna.load_study(study_name=job.name, storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec))
    done = 0
    with file_lock(lock_path(state, job.name, "workers"), shared=True):
        while True:
            # the study lock until the objective starts (the take); the run-folder lock until Optuna has recorded the
            # outcome: a RUNNING trial whose lock is free is a dead worker's
            with contextlib.ExitStack() as held, contextlib.ExitStack() as take:
                take.enter_context(study_lock(storage, job.name, state))
                # a WAITING trial, a search point to draw, or a trial that died meanwhile to resume
                if not (study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) or search_has_room(study, spec)
                        or any(reconcile(study, spec, job.seeds, retry_failed=False).values())):
                    return done
                study.optimize(functools.partial(objective, job, spec, take.close, held.enter_context), n_trials=1,
                               catch=(Exception,))
            done += 1


def objective(job: Job, spec: StudySpec, release: Callable, hold: Callable, trial: optuna.Trial) -> float:
    release()  # the trial is taken: other workers may take theirs
    _kill_point("after-take")
    slot = slot_of(trial, spec, job.seeds)
    rdir = run_dir(Path(job.state), job.study, job.budget, job.identity, slot.key, slot.seed)
    if not hold(file_lock(rdir / ".lock", wait=False)):  # another live process here runs this very cell
        trial.set_user_attr("failure", f"run folder {rdir} is locked by another live process")
        raise RuntimeError(trial.user_attrs["failure"])
    for k, v in zip(BOOKKEEPING, (socket.gethostname(), os.getpid(), str(rdir))):
        trial.set_user_attr(k, v)
    return _run_tracked(job, spec, trial, slot, rdir)


def _run_tracked(job: Job, spec: StudySpec, trial: optuna.Trial, slot, rdir: Path) -> float:
    from study.orchestrate.plan import MEASURED_EVAL_S
    from study.tracking import TrialRun, find_run
    from study.tracking_summary import update_study_summary  # from the finished MLflow runs, this one included
    from study.trial import TrialFailed

    cfg = slot.config(spec, job.budget, job.overrides or [])
    cfg.tracking.state_dir = job.state
    id_file = rdir / "mlflow_run_id"
    known_run = (trial.user_attrs.get("mlflow_run_id") or (id_file.read_text().strip() if id_file.exists() else None)
                 or find_run(job.tracking_uri, job.experiment_id, "study.run_dir", str(rdir)))  # killed before the file
    tags = {"study.name": job.study, "study.budget": job.budget, "study.role": slot.role, "study.cell": slot.cell.label,
            "study.cell_key": slot.cell.key, "study.is_default": str(slot.cell.is_default).lower(),
            "study.seed": str(slot.seed), "optuna.trial_number": str(trial.number), "study.run_dir": str(rdir)}
    run = TrialRun(job.tracking_uri, job.experiment_id, job.parent_run_id, tags, cfg.flat(), run_id=known_run)
    _kill_point("after-mlflow-run")
    write_text(id_file, run.run_id)
    trial.set_user_attr("mlflow_run_id", run.run_id)
    what = f"random init, seed {slot.seed}" if slot.role == "baseline" else f"cell {slot.cell.label}, seed {slot.seed}"
    progress = {"label": f"[trial {trial.number}] {slot.cell.label} s{slot.seed}"} | (
        {"rich": False} if job.plain_progress else {})
    hooks = Hooks(run, trial, spec.pruning, cfg.train.epochs, MEASURED_EVAL_S[job.budget], progress)
    started = time.monotonic()
    print(f"[trial {trial.number}] {what}: started", flush=True)
    try:
        metrics = resolve_fn(job.baseline_fn if slot.role == "baseline" else job.trial_fn)(cfg, rdir, hooks)
        if not (hooks.pruned or metrics.get("pruned")) and spec.primary_metric not in metrics:
            raise TrialFailed(f"the trial returned no {spec.primary_metric} "
                              f"(it returned {', '.join(sorted(metrics)) or 'nothing'})")
    except KeyboardInterrupt:
        run.end("KILLED")  # stopped, not failed: the next `study run` resumes it and this run becomes RUNNING again
        raise
    except Exception as e:  # a failure of one cell must not stop the study: record it with its cause, go on
        _record_failure(trial, run, rdir, e, what, f"{time.monotonic() - started:.0f}s",
                        expected=isinstance(e, (TrialFailed, UserError)))
        raise
    if hooks.pruned or metrics.get("pruned"):
        run.end("KILLED")
        raise optuna.TrialPruned()
    run.flush()
    trial.set_user_attr("tracking_s", run.tracking_seconds)
    run.end("FINISHED")
    update_study_summary(job.parent_run_id, job.tracking_uri, job.experiment_id, spec.primary_metric, spec.direction)
    value = metrics[spec.primary_metric]
    print(f"[trial {trial.number}] {what}: {spec.primary_metric} = {value:.2f} in "
          f"{time.monotonic() - started:.0f}s", flush=True)
    return value


def _kill_point(where: str) -> None:
    """Fault injection for the tests: STUDY_TEST_KILL_AT=<where> kills this worker there, as kill -9 would."""
    if os.environ.get("STUDY_TEST_KILL_AT") == where:
        os.kill(os.getpid(), signal.SIGKILL)


def _record_failure(trial: optuna.Trial, run, rdir: Path, e: Exception, what: str, took: str, expected: bool) -> None:
    """The reason in one line (Optuna attr `failure`, MLflow tag study.failure), the traceback in the log, the
    Optuna attr `failure_traceback` (its tail) and the MLflow artifact failure.txt. A training failure the trial
    names itself (a non-finite loss, unreadable data) needs no traceback in the log; a bug does."""
    reason = str(e) if expected else repr(e)
    tb = traceback.format_exc()
    log.error("[trial %d] %s: FAILED after %s: %s", trial.number, what, took, reason, exc_info=not expected)
    write_text(rdir / "failure.txt", tb)
    trial.set_user_attr("failure", reason[:2000])
    trial.set_user_attr("failure_traceback", tb[-TRACEBACK_CHARS:])
    run.log_artifact(rdir / "failure.txt")
    run.end("FAILED", failure=reason)


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
