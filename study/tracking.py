"""MLflow: one experiment per (study, budget), a parent run per Optuna study, a child run per trial, what is logged.

The only module that imports mlflow. The schema (tags `study.*`, metric names in percent) is shared with analysis/,
which reads it back through `fetch_study_runs` as plain dicts and never touches MLflow objects.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.config import state_dir as config_state_dir

FLUSH_EVERY_S = 10.0  # metrics are buffered and sent in one log_batch call at most this often (and at the end)
FINAL_METRICS_EXTRA = ("train.final_loss", "train.steps", "train.wall_s", "eval.wall_s")
for _noisy in ("mlflow.system_metrics", "mlflow.store.db.utils", "alembic"):  # INFO lines per run / new store otherwise
    logging.getLogger(_noisy).setLevel(logging.WARNING)
_EXPERIMENT_NAME = re.compile(r"^(?P<study>.+) \[(?P<budget>[^\]]+)\]$")


def state_dir() -> Path:
    """The local state folder ($STUDY_STATE_DIR, else .study in the working directory), as config.state_dir says."""
    return config_state_dir(None)


def default_tracking_uri(state: Path) -> str:
    return f"sqlite:///{state / 'mlflow.db'}"


def resolve_tracking_uri(tracking_uri: str | None, state: Path) -> str:
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(state)


def experiment_name(study: str, budget: str) -> str:
    return f"{study} [{budget}]"


def _client(tracking_uri: str) -> MlflowClient:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(study: str, budget: str, tracking_uri: str, artifact_root: Path | None) -> str:
    """Create the study's experiment once (before any worker starts; creation races otherwise). Returns its id."""
    client = _client(tracking_uri)
    name = experiment_name(study, budget)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (artifact_root / name.replace(" ", "_").replace("[", "").replace("]", "")).as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another machine created it between our look and our create
        return client.get_experiment_by_name(name).experiment_id


def start_parent_run(experiment_id: str, tracking_uri: str, tags: dict[str, str]) -> str:
    client = _client(tracking_uri)
    run = client.create_run(experiment_id, run_name=tags.get("study.name"), tags={**tags, "study.role": "parent"})
    return run.info.run_id


def set_run_status(run_id: str, status: str, tracking_uri: str) -> None:
    """FINISHED / FAILED / KILLED / RUNNING."""
    client = _client(tracking_uri)
    if status == "RUNNING":
        client.update_run(run_id, status=status)
    else:
        client.set_terminated(run_id, status=status)


def _get_run(client: MlflowClient, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def run_status(run_id: str, tracking_uri: str) -> str | None:
    run = _get_run(_client(tracking_uri), run_id)
    return run.info.status if run is not None else None


class TrialRun:
    """One child run (trial or baseline), opened new or reopened on resume; metrics go out in batches."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, tags: dict[str, str],
                 params: dict[str, Any], run_id: str | None = None, system_metrics: bool = True):
        self.client = _client(tracking_uri)
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self.tracking_seconds = 0.0  # wall time spent inside MLflow calls (the < 2% budget)
        t0 = time.perf_counter()
        mlflow.set_tracking_uri(tracking_uri)
        if system_metrics:  # psutil CPU/RAM, and GPU through nvidia-ml-py when installed (MLflow's own monitor)
            mlflow.set_system_metrics_sampling_interval(5)
            mlflow.set_system_metrics_samples_before_logging(1)
        previous = _get_run(self.client, run_id) if run_id is not None else None
        if previous is not None:  # resumed: the same run again; params already there are not sent twice
            self.run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
            fresh = [Param(k, _param_str(v)) for k, v in params.items() if k not in previous.data.params]
            first_tags = [RunTag(k, str(v)) for k, v in tags.items()]
        else:  # new: the tags go with the run's creation
            self.run = mlflow.start_run(experiment_id=experiment_id, run_name=tags.get("study.cell"),
                                        parent_run_id=parent_run_id, tags=tags, log_system_metrics=system_metrics)
            fresh = [Param(k, _param_str(v)) for k, v in params.items()]
            first_tags = []
        self.run_id = self.run.info.run_id
        for i in range(0, max(len(fresh), len(first_tags)), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=fresh[i:i + 100], tags=first_tags if i == 0 else [])
        self.tracking_seconds += time.perf_counter() - t0

    @property
    def artifact_dir(self) -> Path | None:
        uri = self.run.info.artifact_uri
        return Path(uri.removeprefix("file://")) if uri.startswith("file://") else None

    # -- TrialHooks (the orchestrator adds report_intermediate)
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()
        self.tracking_seconds += time.perf_counter() - t0

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        t0 = time.perf_counter()
        self.client.log_artifact(self.run_id, str(path), artifact_path)
        self.tracking_seconds += time.perf_counter() - t0

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def flush(self) -> None:
        t0 = time.perf_counter()
        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]  # MLflow's per-call limit
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()
        self.tracking_seconds += time.perf_counter() - t0

    def end(self, status: str, failure: str | None = None) -> None:
        """Flush, record the reason of a failure, and close the run with the trial's status."""
        self.flush()
        if failure:
            self.set_tags({"study.failure": failure[:4000]})
        mlflow.end_run(status=status)


def _param_str(v: Any) -> str:
    return str(v)[:6000]


# ---------------------------------------------------------------- reading back (analysis, status)
def _experiments(client: MlflowClient, study: str | None = None) -> list[tuple[str, str, Any]]:
    out = []
    for exp in client.search_experiments(max_results=1000):
        m = _EXPERIMENT_NAME.match(exp.name)
        if m and (study is None or m["study"] == study):
            out.append((m["study"], m["budget"], exp))
    return out


def _search(client: MlflowClient, experiment_id: str, filter_string: str, max_results: int | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=max_results or 1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token or (max_results and len(runs) >= max_results):
            return runs


def fetch_study_runs(study: str, budget: str | None = None, tracking_uri: str | None = None) -> list[dict]:
    """One plain dict per trial or baseline run of the study at `budget` (None: the budget with the latest runs)."""
    uri = resolve_tracking_uri(tracking_uri, state_dir())
    client = _client(uri)
    candidates = [(b, exp) for _, b, exp in _experiments(client, study) if budget is None or b == budget]
    chosen, latest = None, -1
    for b, exp in candidates:
        runs = _search(client, exp.experiment_id, "tags.`study.role` != 'parent'", max_results=1)
        start = runs[0].info.start_time if runs else -1
        if start > latest:
            chosen, latest = exp, start
    if chosen is None:
        return []
    runs = _search(client, chosen.experiment_id, "tags.`study.role` != 'parent'")  # tags have no IN filter
    return [_run_dict(client, r) for r in runs if r.data.tags.get("study.role") in ("trial", "baseline")]


def fetch_parent_run(study: str, budget: str, tracking_uri: str | None = None) -> dict | None:
    """The study's parent run as a plain dict (tags: provenance; metrics), the newest if there are several; None when
    there is none. Read only (the report's provenance)."""
    client = _client(resolve_tracking_uri(tracking_uri, state_dir()))
    for _, b, exp in _experiments(client, study):
        if b == budget:
            runs = _search(client, exp.experiment_id, "tags.`study.role` = 'parent'")
            if runs:
                run = max(runs, key=lambda r: r.info.start_time or 0)
                return {"run_id": run.info.run_id, "status": run.info.status, "tags": dict(run.data.tags),
                        "metrics": dict(run.data.metrics)}
    return None


def metric_history(run_id: str, key: str, tracking_uri: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of one run, by step."""
    return sorted((m.step, m.value) for m in _client(tracking_uri).get_metric_history(run_id, key))


def _run_dict(client: MlflowClient, run: Any) -> dict:
    tags, info = run.data.tags, run.info
    uri = info.artifact_uri or ""
    history = client.get_metric_history(info.run_id, "train.loss")
    seed, number = tags.get("study.seed"), tags.get("optuna.trial_number")
    return {"run_id": info.run_id, "role": tags.get("study.role"), "status": info.status,
            "study": tags.get("study.name"), "budget": tags.get("study.budget"), "cell": tags.get("study.cell"),
            "cell_key": tags.get("study.cell_key"), "is_default": tags.get("study.is_default") == "true",
            "seed": int(seed) if seed not in (None, "") else None,
            "trial_number": int(number) if number not in (None, "") else None,
            "metrics": {k: v for k, v in run.data.metrics.items() if not k.startswith("system/")},
            "params": dict(run.data.params), "start_time": info.start_time, "end_time": info.end_time,
            "loss_history": sorted((m.step, m.value) for m in history),
            "artifact_dir": uri.removeprefix("file://") if uri.startswith("file://") else None,
            "failure": tags.get("study.failure")}


def studies_with_runs(tracking_uri: str | None = None) -> list[tuple[str, str]]:
    """(study, budget) pairs with at least one FINISHED trial."""
    client = _client(resolve_tracking_uri(tracking_uri, state_dir()))
    out = []
    for study, budget, exp in _experiments(client):
        if _search(client, exp.experiment_id, "tags.`study.role` = 'trial' and attributes.status = 'FINISHED'", 1):
            out.append((study, budget))
    return sorted(out)


# ---------------------------------------------------------------- UI
def serve_ui(port: int = 5000, host: str = "127.0.0.1", tracking_uri: str | None = None) -> None:
    """`mlflow server` over the local store: one worker, job execution off; Ctrl-C (or SIGTERM) stops it."""
    import socket

    from study.errors import UserError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:  # a taken port would otherwise show as a page of uvicorn traceback
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    state = state_dir()
    uri = resolve_tracking_uri(tracking_uri, state)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1", "--artifacts-destination", (state / "mlartifacts").as_uri()]
    _client(uri)  # creates the state folder for a fresh sqlite store
    print(f"MLflow UI: http://{host}:{port}  (store {uri}; Ctrl-C stops it)", flush=True)

    def _interrupt(signum, frame):  # SIGTERM (a service manager, `kill`) stops it as Ctrl-C does: server included
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # own group: we stop it, then report
    try:
        while proc.poll() is None:  # in steps: a blocking wait misses a Ctrl-C that lands on one of MLflow's threads
            time.sleep(0.5)
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print("MLflow UI stopped.", flush=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if proc.returncode:
        raise UserError(f"mlflow server exited with code {proc.returncode} (its error is above); "
                        f"check --tracking-uri {uri}")
