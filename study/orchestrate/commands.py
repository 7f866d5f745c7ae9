"""`study run / status`: validate everything first, then open the stores, enqueue, start the workers.

Bad input (unknown study or budget, a bad study file or --set, the paper budget without data roots) raises a
one-line UserError before either store is opened, so nothing is created.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from optuna.trial import TrialState

from study.config import RunConfig, state_dir
from study.config_load import default_budget, parse_set
from study.errors import UserError
from study.orchestrate.queue import Slot, planned_slots, reconcile
from study.orchestrate.storage import (check_storage_url, create_sqlite, default_storage_url, file_lock, no_live_worker,
                                       open_storage, study_lock)
from study.studies import StudySpec, load_study

ROOT_KEYS = {"davis": "eval.davis_root", "jhmdb": "eval.jhmdb_root", "vip": "eval.vip_root"}
POLL_S = 2.0  # how often `study run` looks at cells that other processes are still running


def resolve(spec: StudySpec, budget: str, seeds: int | None, overrides: list[str]) -> list[tuple[Slot, RunConfig]]:
    """Every planned slot's config; any bad key, value or budget raises here, before anything is opened."""
    for key in parse_set(overrides):  # the cells would all run at the --set value, labelled with their own
        if key == "train.seed":
            raise UserError("--set train.seed: the seed is an axis of every study; give --seeds N instead")
        if key in spec.factor_keys:
            raise UserError(f"--set {key}: {key} is an axis of study {spec.name} (each cell sets it); drop the --set, "
                            f"or change the axis in experiments/studies/{spec.name}.toml")
    out = [(slot, slot.config(spec, budget, overrides)) for slot in planned_slots(spec, seeds)]
    cfg = out[0][1]
    missing = [k for k, v in [("data.root", cfg.data.root)] + [(ROOT_KEYS[d], getattr(cfg.eval, f"{d}_root"))
                                                               for d in cfg.eval.datasets] if not v]
    if budget == "paper" and missing:
        raise UserError(f"budget paper needs real data: set {', '.join(missing)} in experiments/local.toml "
                        "(or the file $STUDY_LOCAL_CONFIG names), e.g. [data] root = \"/data/kinetics400/train\"")
    return out


def run_command(name: str, budget: str | None = None, workers: int = 1, seeds: int | None = None,
                storage: str | None = None, tracking_uri: str | None = None, dry_run: bool = False,
                retry_failed: bool = False, overrides: list[str] | None = None, trial_fn=None, baseline_fn=None,
                slurm=None, shared_state: str | None = None, procs_per_worker: int = 1,
                cells: str | None = None) -> None:
    """slurm: a study.orchestrate.slurm.SlurmOptions to submit the workers as a SLURM array job (None: on this
    machine); procs_per_worker > 1: each trial trains under torchrun on that many processes (DDP); cells: `--cells`, the
    labels of the cells to run, comma-separated (None: every cell)."""
    from study.orchestrate.worker import Job, fn_path, threads_per_worker

    spec, budget, overrides = load_study(name), budget or default_budget(), overrides or []
    spec = spec.select(spec.split_cells(cells) if cells else None)
    if workers < 1 or procs_per_worker < 1 or (seeds is not None and seeds < 1):
        raise UserError(f"--workers {workers} --procs-per-worker {procs_per_worker} --seeds {seeds}: "
                        "give at least 1 of each")
    if shared_state:  # every process of the study (and every node) uses this state folder
        os.environ["STUDY_STATE_DIR"] = str(Path(shared_state).resolve())
    if slurm is not None:
        from study.orchestrate.slurm import check_shared_state, executor_parameters

        check_shared_state(storage, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), shared_state)
        executor_parameters(slurm, name)  # a bad --time or --slurm-set fails here, before anything is opened
    configs = resolve(spec, budget, seeds, overrides)
    if storage:
        check_storage_url(storage)
    if dry_run:
        from study.orchestrate.plan import print_plan

        return print_plan(spec, budget, configs, overrides, workers)
    from study import tracking
    from study.train.ddp import PROCS_ENV

    os.environ[PROCS_ENV] = str(procs_per_worker)  # read by the trials of this process and of its local workers
    state = state_dir(configs[0][1])
    job = Job(spec.name, budget, storage or default_storage_url(state), tracking.resolve_tracking_uri(tracking_uri, state),
              "", "", str(state), seeds, overrides, threads=threads_per_worker(workers), cells=list(spec.only) or None)
    if trial_fn:  # tests run a fake trial; by module path, so worker processes find it too
        job.trial_fn = fn_path(trial_fn)
    if baseline_fn:
        job.baseline_fn = fn_path(baseline_fn)
    _run(job, spec, workers, retry_failed, slurm)


def rerun_command(job, command: str = "run") -> str:
    """The `study run` line that continues this study (or the `study status` line that shows it)."""
    parts = [f"study {command} {job.study} --budget {job.budget}", *(f"--set {s}" for s in job.identity)]
    parts += [f"--seeds {job.seeds}"] if job.seeds and command == "run" else []
    parts += [f"--cells {shlex.quote(','.join(job.cells))}"] if job.cells and command == "run" else []
    parts += [f"--storage {job.storage}"] if job.storage != default_storage_url(Path(job.state)) else []
    return " ".join(parts)


def _run(job, spec: StudySpec, workers: int, retry_failed: bool, slurm=None) -> None:
    from study import tracking
    from study.orchestrate.status import print_status

    st, study = _open(job, spec, retry_failed)
    tracking.set_run_status(job.parent_run_id, "RUNNING", job.tracking_uri)
    if slurm is not None:  # the launcher seam: the workers run as SLURM array tasks; this command returns
        from study.orchestrate.slurm import JOBS_ATTR, submit_workers

        job.threads = 0
        job_id = submit_workers(job, slurm, Path(job.state))
        study.set_user_attr(JOBS_ATTR, [*study.user_attrs.get(JOBS_ATTR, []), job_id])
        print(f"submitted SLURM job {job_id}: {slurm.workers} worker(s); logs in {Path(job.state) / 'slurm'}; "
              f"`{rerun_command(job, 'status')}` shows them", flush=True)
        return
    try:
        ok, waited = start_local_workers(job, workers), False
        while ok and _left(job, spec, st, study):  # runs that other processes run, or left behind
            if not waited:
                print("waiting for runs of other processes (`study status` shows them)", flush=True)
            waited = True
            time.sleep(POLL_S)
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                ok = start_local_workers(job, workers)
    except KeyboardInterrupt:
        tracking.set_run_status(job.parent_run_id, "KILLED", job.tracking_uri)
        print(f"\ninterrupted: `{rerun_command(job)}` resumes the study", file=sys.stderr)
        raise SystemExit(130) from None
    rows = print_status(spec, job.name, st, seeds=job.seeds)
    failed = [f"{cell} seed {seed}" for cell, seed, word in rows if word == "failed"]
    left = [f"{cell} seed {seed}: {word}" for cell, seed, word in rows if word not in ("done", "pruned", "failed")]
    tracking.set_run_status(job.parent_run_id, "FAILED" if failed else "KILLED" if left else "FINISHED", job.tracking_uri)
    if failed:
        print(f"error: {len(failed)} of {len(rows)} runs failed ({', '.join(failed)}); their reasons are in "
              f"`{rerun_command(job, 'status')}`; fix the cause, then `{rerun_command(job)} --retry-failed`",
              file=sys.stderr)
    if left:
        print(f"error: {len(left)} of {len(rows)} runs did not finish ({', '.join(left)}); `{rerun_command(job)}` "
              "resumes them", file=sys.stderr)
    if failed or left:
        raise SystemExit(1)


def _open(job, spec: StudySpec, retry_failed: bool):
    """Create the stores (once), the Optuna study and the MLflow parent run; reconcile the queue. -> storage, study"""
    import json

    import optuna

    from study import tracking
    from study.orchestrate.worker import make_pruner, make_sampler

    state, uri = Path(job.state), job.tracking_uri
    # two `study run`s on a fresh state folder: one creates the stores (tables, migrations), the other waits
    with file_lock(state / "locks" / "stores.lock"):
        create_sqlite(job.storage, lambda url: open_storage(url).engine.dispose())
        create_sqlite(uri, tracking.studies_with_runs)  # any read creates MLflow's store
        st = open_storage(job.storage)
        job.experiment_id = tracking.ensure_experiment(
            spec.name, job.budget, uri, state / "mlartifacts" if uri.startswith(("sqlite", "file")) else None, job.identity)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with study_lock(st, job.name, state):
        study = optuna.create_study(study_name=job.name, storage=st, direction=spec.direction, load_if_exists=True,
                                    sampler=make_sampler(spec), pruner=make_pruner(spec))
        job.parent_run_id = study.user_attrs.get("mlflow_parent_run_id")
        if job.parent_run_id is None or tracking.run_status(job.parent_run_id, uri) is None:
            job.parent_run_id = tracking.start_parent_run(job.experiment_id, uri, {
                "study.name": spec.name, "study.budget": job.budget, "study.question": spec.question,
                "study.overrides": json.dumps(job.identity)}, state=state, storage=job.storage)
            study.set_user_attr("mlflow_parent_run_id", job.parent_run_id)
        study.set_user_attr("seeds", job.seeds)  # `study status` plans the same (cell, seed)s
        study.set_user_attr("cells", job.cells)
        counts = reconcile(study, spec, job.seeds, retry_failed, no_live_worker(st, state, job.name))
    print(f"study {job.name}: {counts['new']} new, {counts['resumed']} to resume, {counts['retried']} to retry; "
          f"state in {state}", flush=True)
    return st, study


def _left(job, spec: StudySpec, st, study) -> bool:
    """After our workers ended: resume what died meanwhile; True while a run is queued or running elsewhere."""
    with study_lock(st, job.name, Path(job.state)):
        reconcile(study, spec, job.seeds, False, no_live_worker(st, Path(job.state), job.name))
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def start_local_workers(job, n: int) -> bool:
    """The launcher: N workers of `job` on this machine until the queue is empty (one runs in this process); one GPU
    each when there are GPUs; Ctrl-C reaches them all (same process group). -> whether all of them ended well.
    Another launcher (a cluster's) starts `python -m study.orchestrate.worker '<job json>'` its own way."""
    from study.orchestrate.worker import job_json, worker_loop

    if n == 1:
        worker_loop(job)
        return True
    gpus = 0
    if shutil.which("nvidia-smi"):  # no torch import (seconds) on a machine without GPUs
        import torch

        gpus = torch.cuda.device_count()
    line = job_json(dataclasses.replace(job, plain_progress=True))
    procs = [subprocess.Popen([sys.executable, "-m", "study.orchestrate.worker", line], env=dict(
        os.environ, MLFLOW_DISABLE_TELEMETRY="true", **({"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus else {})))
        for i in range(n)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # they got SIGINT too and are marking their trials interrupted; give them a moment
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.terminate()
        raise
    if any(codes):
        print(f"warning: worker exit codes {codes}", file=sys.stderr)
    return not any(codes)


def status_command(name: str, budget: str | None = None, storage: str | None = None,
                   overrides: list[str] | None = None) -> None:
    from study.orchestrate.status import status

    status(load_study(name), budget, storage, overrides or [])
