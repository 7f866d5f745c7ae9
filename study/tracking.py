"""MLflow: one experiment per (study, budget), a parent run per Optuna study, a child run per trial, what is logged.

With tracking_summary.py (the study at a glance in MLflow's UI), the only module that imports mlflow. The schema
(tags `study.*`, metric names in percent) is shared with analysis/, which reads it back through `fetch_study_runs` and
`fetch_parent_run` as plain dicts and never touches MLflow objects.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.config import state_dir as config_state_dir
from study.provenance import command_line, git_commit, package_versions, redact_url
from study.studies import parse_stored_name, stored_name

# metrics are buffered and sent in one log_batch call at most this often (and at the end): a kill -9 loses at most
# this many seconds of them; one batch costs a few ms, well inside the 2% tracking budget
FLUSH_EVERY_S = 3.0
FINAL_METRICS_EXTRA = ("train.final_loss", "train.steps", "train.wall_s", "eval.wall_s")
# MLflow 3.17's UI opens an experiment in its GenAI layout (traces, assistant) unless it is of this kind.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_NOISY = ("mlflow.system_metrics", "mlflow.store.db.utils", "alembic")  # INFO lines per run / new store otherwise


def state_dir() -> Path:
    """The local state folder ($STUDY_STATE_DIR, else .study in the working directory), as config.state_dir says."""
    return config_state_dir(None)


def default_tracking_uri(state: Path) -> str:
    return f"sqlite:///{state / 'mlflow.db'}"


def resolve_tracking_uri(tracking_uri: str | None, state: Path) -> str:
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(state)


def mlflow_client(tracking_uri: str) -> MlflowClient:
    for name in _NOISY:  # here, not at import: importing a module changes no logging
        logging.getLogger(name).setLevel(logging.WARNING)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(study: str, budget: str, tracking_uri: str, artifact_root: Path | None,
                      overrides: list[str] = ()) -> str:
    """Create the study's experiment once (before any worker starts; creation races otherwise). Returns its id."""
    client = mlflow_client(tracking_uri)
    name = stored_name(study, budget, overrides)
    found = client.get_experiment_by_name(name)
    if found is None:
        location = (artifact_root / name.replace(" ", "_").replace("[", "").replace("]", "")).as_uri() if artifact_root else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
        except MlflowException:  # another machine created it between our look and our create
            found = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND[0] not in found.tags:  # made before the kind was set: tag it now (a kind the user chose stays)
        client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
    return found.experiment_id


def start_parent_run(experiment_id: str, tracking_uri: str, tags: dict[str, str], *, state: Path | str | None = None,
                     storage: str | None = None) -> str:
    """The study's parent run, named like its experiment, with the provenance a report cites as `study.*` tags."""
    client = mlflow_client(tracking_uri)
    sets = json.loads(tags.get("study.overrides", "[]"))
    name = stored_name(tags["study.name"], tags["study.budget"], sets) if "study.budget" in tags else tags.get("study.name")
    provenance = {"study.command": command_line(), "study.git_commit": git_commit(),
                  "study.versions": json.dumps(package_versions()),
                  "study.state_dir": str(Path(state).resolve() if state is not None else state_dir())}
    if storage is not None:
        provenance["study.storage"] = redact_url(storage)
    run = client.create_run(experiment_id, run_name=name, tags={**provenance, **tags, "study.role": "parent"})
    return run.info.run_id


def run_name(tags: dict[str, str]) -> str:
    """What the MLflow UI lists a child run as: `mask_ratio=0.9 · seed 1`, or `random init · seed 1`."""
    if tags.get("study.role") == "baseline":
        return f"random init · seed {tags.get('study.seed', '?')}"
    return f"{cell_name(tags.get('study.cell', ''), tags.get('study.cell_key'))} · seed {tags.get('study.seed', '?')}"


def cell_name(label: str, cell_key: str | None) -> str:
    """A cell's label with its axis named: a one-axis study labels cells by value alone (`0.9` -> `mask_ratio=0.9`)."""
    try:
        overrides = json.loads(cell_key) if cell_key else {}
    except ValueError:
        overrides = {}
    if isinstance(overrides, dict) and len(overrides) == 1:
        (key, value), = overrides.items()
        if label in (str(value), json.dumps(value)):
            return f"{key.rsplit('.', 1)[-1]}={label}"
    return label


def set_run_status(run_id: str, status: str, tracking_uri: str) -> None:
    """FINISHED / FAILED / KILLED / RUNNING."""
    client = mlflow_client(tracking_uri)
    if status == "RUNNING":
        client.update_run(run_id, status=status)
    else:
        client.set_terminated(run_id, status=status)


def _get_run(client: MlflowClient, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def find_run(tracking_uri: str, experiment_id: str, tag: str, value: str) -> str | None:
    """The newest run of the experiment whose tag `tag` is `value` (a trial's run made just before a kill)."""
    runs = search_runs(mlflow_client(tracking_uri), experiment_id, f"tags.`{tag}` = '{value}'", max_results=1)
    return runs[0].info.run_id if runs else None


def run_status(run_id: str, tracking_uri: str) -> str | None:
    run = _get_run(mlflow_client(tracking_uri), run_id)
    return run.info.status if run is not None else None


class TrialRun:
    """One child run (trial or baseline), opened new or reopened on resume; metrics go out in batches."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, tags: dict[str, str],
                 params: dict[str, Any], run_id: str | None = None, system_metrics: bool = True):
        self.client = mlflow_client(tracking_uri)
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
            self.run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name(tags),
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
def study_experiments(client: MlflowClient, study: str | None = None,
                      overrides: str | None = None) -> list[tuple[str, str, Any]]:
    """(study, budget, experiment) of the studies; `overrides`: only those run with exactly these --set values
    ("": none; None: any)."""
    out = []
    for exp in client.search_experiments(max_results=1000):
        parsed = parse_stored_name(exp.name)
        if parsed and (study is None or parsed[0] == study) and overrides in (None, parsed[2]):
            out.append((parsed[0], parsed[1], exp))
    return out


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str, max_results: int | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=max_results or 1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token or (max_results and len(runs) >= max_results):
            return runs


def fetch_study_runs(study: str, budget: str | None = None, tracking_uri: str | None = None,
                     overrides: list[str] = ()) -> list[dict]:
    """One plain dict per trial or baseline run of the study at `budget` (None: the budget with the latest runs), run
    with these --set values (as `studies.canonical_overrides` gives them; none by default)."""
    uri = resolve_tracking_uri(tracking_uri, state_dir())
    client = mlflow_client(uri)
    candidates = [(b, exp) for _, b, exp in study_experiments(client, study, " ".join(overrides))
                  if budget is None or b == budget]
    chosen, latest = None, -1
    for b, exp in candidates:
        runs = search_runs(client, exp.experiment_id, "tags.`study.role` != 'parent'", max_results=1)
        start = runs[0].info.start_time if runs else -1
        if start > latest:
            chosen, latest = exp, start
    if chosen is None:
        return []
    runs = search_runs(client, chosen.experiment_id, "tags.`study.role` != 'parent'")  # tags have no IN filter
    return [_run_dict(client, r) for r in runs if r.data.tags.get("study.role") in ("trial", "baseline")]


def fetch_parent_run(study: str, budget: str, tracking_uri: str | None = None,
                     overrides: list[str] = ()) -> dict | None:
    """The study's parent run as a plain dict (tags: provenance, best cell; metrics: the summary), newest first."""
    client = mlflow_client(resolve_tracking_uri(tracking_uri, state_dir()))
    for _, b, exp in study_experiments(client, study, " ".join(overrides)):
        if b == budget:
            runs = search_runs(client, exp.experiment_id, "tags.`study.role` = 'parent'")
            if runs:
                run = max(runs, key=lambda r: r.info.start_time or 0)
                return {"run_id": run.info.run_id, "status": run.info.status, "tags": dict(run.data.tags),
                        "metrics": dict(run.data.metrics)}
    return None


def metric_history(run_id: str, key: str, tracking_uri: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of one run, by step."""
    return sorted((m.step, m.value) for m in mlflow_client(tracking_uri).get_metric_history(run_id, key))


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
    client = mlflow_client(resolve_tracking_uri(tracking_uri, state_dir()))
    out = []
    for study, budget, exp in study_experiments(client, overrides=""):  # Table 2: the studies as their files say
        if search_runs(client, exp.experiment_id, "tags.`study.role` = 'trial' and attributes.status = 'FINISHED'", 1):
            out.append((study, budget))
    return sorted(out)
