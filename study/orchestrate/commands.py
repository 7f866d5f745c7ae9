"""`study run / list / show / status`: validate everything first, then open the stores, enqueue, start the workers.

Bad input (unknown study or budget, a bad study file or --set, the paper budget without data roots) raises a
one-line UserError before either store is opened, so nothing is created.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from study.config import RunConfig, default_budget, load_config, parse_set, state_dir
from study.errors import UserError
from study.orchestrate.queue import Slot, planned_slots
from study.studies import StudySpec, load_study, study_names

ROOT_KEYS = {"davis": "eval.davis_root", "jhmdb": "eval.jhmdb_root", "vip": "eval.vip_root"}


def resolve(spec: StudySpec, budget: str, seeds: int | None, overrides: list[str]) -> list[tuple[Slot, RunConfig]]:
    """Every planned slot's config; any bad key, value or budget raises here, before anything is opened."""
    flags = parse_set(overrides)
    out = [(slot, load_config(budget, layers=spec.layers(slot.cell, slot.seed, budget), overrides=flags))
           for slot in planned_slots(spec, seeds)]
    if budget == "paper":
        cfg = out[0][1]
        missing = [k for k, v in [("data.root", cfg.data.root)] + [(ROOT_KEYS[d], getattr(cfg.eval, f"{d}_root"))
                                                                   for d in cfg.eval.datasets] if not v]
        if missing:
            raise UserError(f"budget paper needs real data: set {', '.join(missing)} in experiments/local.toml "
                            "(or the file $STUDY_LOCAL_CONFIG names), e.g. [data] root = \"/data/kinetics400/train\"")
    return out


def run_command(name: str, budget: str | None = None, workers: int = 1, seeds: int | None = None,
                storage: str | None = None, tracking_uri: str | None = None, dry_run: bool = False,
                retry_failed: bool = False, overrides: list[str] | None = None, trial_fn=None, baseline_fn=None,
                slurm=None, shared_state: str | None = None, procs_per_worker: int = 1) -> None:
    """slurm: a study.orchestrate.slurm.SlurmOptions to submit the workers as a SLURM array job (None: on this
    machine); procs_per_worker > 1: each trial trains under torchrun on that many processes (DDP)."""
    from study.orchestrate.storage import check_storage_url

    spec = load_study(name)
    if workers < 1:
        raise UserError(f"--workers {workers}: give at least 1")
    if procs_per_worker < 1:
        raise UserError(f"--procs-per-worker {procs_per_worker}: give at least 1")
    if shared_state:  # every process of the study (and every node) uses this state folder
        os.environ["STUDY_STATE_DIR"] = str(Path(shared_state).resolve())
    if slurm is not None:
        from study.orchestrate.slurm import check_shared_state, executor_parameters

        check_shared_state(storage, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), shared_state)
        executor_parameters(slurm, name)  # a bad --time or --slurm-set fails here, before anything is opened
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds {seeds}: give at least 1")
    budget = budget or default_budget()
    configs = resolve(spec, budget, seeds, overrides or [])
    if storage:
        check_storage_url(storage)
    if dry_run:
        from study.orchestrate.plan import print_plan

        print_plan(spec, budget, configs, overrides or [], workers)
        return
    from study.train.ddp import PROCS_ENV

    os.environ[PROCS_ENV] = str(procs_per_worker)  # read by the trials of this process and of its local workers
    _run(spec, budget, workers, seeds, storage, tracking_uri, retry_failed, overrides or [], configs, trial_fn,
         baseline_fn, slurm)


def _run(spec, budget, workers, seeds, storage, tracking_uri, retry_failed, overrides, configs, trial_fn, baseline_fn,
         slurm=None):
    import optuna

    from study import tracking
    from study.orchestrate.queue import reconcile
    from study.orchestrate.status import print_status
    from study.orchestrate.storage import default_storage_url, open_storage, study_lock, study_name
    from study.orchestrate.worker import Job, fn_path, make_pruner, make_sampler, worker_loop

    state = state_dir(configs[0][1])
    state.mkdir(parents=True, exist_ok=True)
    storage_url = storage or default_storage_url(state)
    uri = tracking.resolve_tracking_uri(tracking_uri, state)
    local_store = uri.startswith("sqlite") or uri.startswith("file")
    experiment_id = tracking.ensure_experiment(spec.name, budget, uri, state / "mlartifacts" if local_store else None)
    st = open_storage(storage_url)
    sname = study_name(spec.name, budget)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with study_lock(st, sname, state):
        study = optuna.create_study(study_name=sname, storage=st, direction=spec.direction, load_if_exists=True,
                                    sampler=make_sampler(spec), pruner=make_pruner(spec))
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if parent is None or tracking.run_status(parent, uri) is None:
            parent = tracking.start_parent_run(experiment_id, uri, {"study.name": spec.name, "study.budget": budget,
                                                                    "study.question": spec.question},
                                               state=state, storage=storage_url)
            study.set_user_attr("mlflow_parent_run_id", parent)
        counts = reconcile(study, st, spec, seeds, retry_failed)
    tracking.set_run_status(parent, "RUNNING", uri)
    print(f"study {sname}: {counts['new']} new, {counts['resumed']} to resume, {counts['retried']} to retry; "
          f"{workers} worker(s); state in {state}", flush=True)
    job = Job(spec.name, budget, storage_url, uri, experiment_id, parent, str(state), seeds, overrides,
              threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0)
    if trial_fn is not None:
        job.trial_fn = fn_path(trial_fn)
    if baseline_fn is not None:
        job.baseline_fn = fn_path(baseline_fn)
    if slurm is not None:  # the launcher seam: the workers run as SLURM array tasks; this command returns
        from study.orchestrate.slurm import JOBS_ATTR, submit_workers

        job.threads = 0
        job_id = submit_workers(job, slurm, state)
        study.set_user_attr(JOBS_ATTR, [*study.user_attrs.get(JOBS_ATTR, []), job_id])
        print(f"submitted SLURM job {job_id}: {slurm.workers} worker(s); logs in {state / 'slurm'}; "
              f"`study status {spec.name} --budget {budget}` shows them", flush=True)
        return
    try:
        if workers == 1:
            worker_loop(job, trial_fn, baseline_fn)
        else:
            _run_workers(job, workers)
    except KeyboardInterrupt:
        tracking.set_run_status(parent, "KILLED", uri)
        print(f"\ninterrupted: run `study run {spec.name} --budget {budget}` again to resume", file=sys.stderr)
        raise SystemExit(130) from None
    finished = print_status(spec, budget, st, seeds=seeds)
    if finished:
        tracking.set_run_status(parent, "FINISHED", uri)


def _run_workers(job, workers: int) -> None:
    """N worker processes; one GPU each when there are GPUs. Ctrl-C reaches them all (same process group)."""
    from study.orchestrate.worker import job_json

    gpus = _gpu_count()
    procs = []
    for i in range(workers):
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", STUDY_STATE_DIR=job.state)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        procs.append(subprocess.Popen([sys.executable, "-m", "study.orchestrate.worker", job_json(job)], env=env))
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        for p in procs:  # they got SIGINT too and are marking their trials interrupted; give them a moment
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
        raise
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad:
        print(f"warning: {len(bad)} worker(s) exited with {bad}; `study run` again resumes their cells", file=sys.stderr)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def status_command(name: str, budget: str | None = None, storage: str | None = None) -> None:
    from study.orchestrate.status import status

    status(load_study(name), budget, storage)


def list_command() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="studies in " + str(Path(os.environ.get("STUDY_EXPERIMENTS") or "experiments")))
    for col in ("study", "table", "question", "factors", "cells", "seeds", "trials"):
        table.add_column(col)
    for n in study_names():
        try:
            spec = load_study(n)
        except UserError as e:
            table.add_row(n, "", f"[red]{e}[/red]", "", "", "", "")
            continue
        cells = f"search x{spec.search_trials}" if spec.is_search else str(len(spec.cells()))
        trials = spec.search_trials if spec.is_search else len(spec.trials())
        table.add_row(n, spec.table, spec.title, ", ".join(spec.factor_keys), cells, str(len(spec.seeds)), str(trials))
    Console().print(table)


def show_command(name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = load_study(name)
    con = Console()
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
    table = Table()
    for col in ("cell", "overrides", "default"):
        table.add_column(col)
    for cell in spec.cells():
        table.add_row(cell.label, ", ".join(f"{k}={v}" for k, v in cell.overrides.items()), "yes" if cell.is_default else "")
    con.print(table)
