"""The study at a glance in MLflow's UI: a summary per cell on the parent run (kept current after every trial), the
experiment's saved runs view (runs grouped by cell, the primary metric shown), and links that open it.

MLflow 3.17's UI keeps the layout (GenAI or model training) in the browser and opens an experiment's runs with no
metric column and the parent run folded; a saved view (an experiment tag MLflow's own 'Views' menu lists) and a link
that names the model-training layout open the runs table as a researcher needs it.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import time

from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study import tracking

log = logging.getLogger(__name__)
RUNS_VIEW_ID = "study"  # the experiment's saved view of its runs: `#/experiments/<id>/runs?viewStateShareKey=study`
_SAVED_VIEW_TAG = "mlflow.sharedViewState."  # where MLflow's UI keeps an experiment's saved views
_METRIC_NAME_BAD = re.compile(r"[^\w.\- /]+")  # MLflow metric names: letters, digits, _ - . space /


def update_study_summary(parent_run_id: str, tracking_uri: str, experiment_id: str, primary_metric: str,
                         direction: str = "maximize") -> dict[str, dict[str, float]]:
    """Recompute the study's summary from its finished child runs and log it on the parent run: per cell the primary
    metric's mean, std (2+ seeds) and n over seeds as metrics `summary/<cell>/mean|std|n`, the best cell (tag
    `study.best_cell`, metric `summary/best/mean`), and a Markdown table as the run's description. Idempotent:
    every worker may call it after every trial. Returns {cell name: {"mean", "std", "n"}} ({} when the store failed)."""
    try:
        return _update_summary(parent_run_id, tracking_uri, experiment_id, primary_metric, direction)
    except MlflowException:  # a busy or unreachable store: the summary is a view, the next trial writes it again
        log.warning("could not update the study summary on run %s", parent_run_id, exc_info=True)
        return {}


def _update_summary(parent_run_id: str, tracking_uri: str, experiment_id: str, primary_metric: str,
                    direction: str) -> dict[str, dict[str, float]]:
    client = tracking.mlflow_client(tracking_uri)
    runs = tracking.search_runs(client, experiment_id,
                                f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'")
    values: dict[str, list[float]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        tags = run.data.tags
        if tags.get("study.role") in ("trial", "baseline") and primary_metric in run.data.metrics:
            name = ("random init" if tags["study.role"] == "baseline"
                    else tracking.cell_name(tags.get("study.cell", ""), tags.get("study.cell_key")))
            values.setdefault(name, []).append(run.data.metrics[primary_metric])
    summary = {name: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else float("nan"),
                      "n": float(len(v))} for name, v in values.items()}
    cells = {k: v for k, v in summary.items() if k != "random init"}
    best = (max if direction == "maximize" else min)(cells, key=lambda k: cells[k]["mean"]) if cells else None
    step = sum(len(v) for v in values.values())
    now = int(time.time() * 1000)
    metrics = [Metric(f"summary/{_metric_safe(name)}/{stat}", value, now, step)
               for name, stats in summary.items() for stat, value in stats.items() if value == value]  # NaN: no std
    tags = [RunTag("mlflow.note.content", _summary_markdown(summary, best, primary_metric, direction)),
            RunTag("study.primary_metric", primary_metric)]
    if best is not None:
        metrics.append(Metric("summary/best/mean", cells[best]["mean"], now, step))
        tags.append(RunTag("study.best_cell", best))
    for i in range(0, len(metrics), 1000):  # MLflow's per-call limit
        client.log_batch(parent_run_id, metrics=metrics[i:i + 1000], tags=tags if i == 0 else [])
    ensure_runs_view(client, experiment_id, primary_metric)
    return summary


def _metric_safe(name: str) -> str:
    return _METRIC_NAME_BAD.sub(" ", name.replace("=", " ")).strip() or "cell"


def _summary_markdown(summary: dict[str, dict[str, float]], best: str | None, metric: str, direction: str) -> str:
    lines = [f"**{metric}** ({direction}) per cell over seeds; best cell in bold.", "",
             "| cell | n | mean | std |", "|---|---:|---:|---:|"]
    for name, s in summary.items():
        shown = f"**{name}**" if name == best else name
        std = f"{s['std']:.2f}" if s["std"] == s["std"] else "-"
        lines.append(f"| {shown} | {s['n']:.0f} | {s['mean']:.2f} | {std} |")
    return "\n".join(lines)


def ensure_runs_view(client: MlflowClient, experiment_id: str, primary_metric: str) -> None:
    """The experiment's saved runs view (MLflow's own 'Views' menu): runs grouped by cell with the primary metric's
    mean per cell, its column and the final loss shown; the parent run under 'Additional runs', opened."""
    key = _SAVED_VIEW_TAG + RUNS_VIEW_ID
    existing = client.get_experiment(experiment_id).tags.get(key)
    if existing is not None and f"metrics.`{primary_metric}`" in existing:
        return
    group_by = {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "study.cell"}]}
    state = {"selectedColumns": [f"metrics.`{primary_metric}`", "metrics.`train.final_loss`", "attributes.`Duration`"],
             # widths apply to the columns named in columnOrder (MLflow's UI restores them together)
             "columnOrder": ["tags.`mlflow.runName`", f"metrics.`{primary_metric}`", "metrics.`train.final_loss`"],
             "columnWidths": {"tags.`mlflow.runName`": 260, f"metrics.`{primary_metric}`": 170,
                              "metrics.`train.final_loss`": 150},
             "groupBy": group_by, "groupsExpanded": {"tag.study.cell": True},
             "orderByKey": "attributes.start_time", "orderByAsc": True}
    now = int(time.time() * 1000)
    envelope = {"name": f"study: {primary_metric} per cell", "createdAt": now, "updatedAt": now,
                "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, key, json.dumps(envelope))


def study_links(base_url: str, tracking_uri: str) -> list[tuple[str, str]]:
    """(experiment name, URL of its runs table in the UI's model-training layout) for each study experiment."""
    client = tracking.mlflow_client(tracking_uri)
    out = []
    for study, budget, exp in tracking.study_experiments(client):
        view = f"&viewStateShareKey={RUNS_VIEW_ID}" if _SAVED_VIEW_TAG + RUNS_VIEW_ID in exp.tags else ""
        out.append((exp.name, f"{base_url}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning{view}"))
    return sorted(out)


def latest_study_trial(tracking_uri: str, study: str | None = None) -> dict | None:
    """The newest study (by its parent run) with a summary, and its best cell's first finished trial run: what the
    UI screenshots show. study: only that study's experiments ('mask_ratio' matches 'mask_ratio [cpu]' and its --set
    variants)."""
    client = tracking.mlflow_client(tracking_uri)
    parents = [(exp, run) for _, _, exp in tracking.study_experiments(client, study)
               for run in tracking.search_runs(client, exp.experiment_id, "tags.`study.role` = 'parent'")
               if "study.primary_metric" in run.data.tags]
    for exp, parent in sorted(parents, key=lambda p: p[1].info.start_time or 0, reverse=True):
        trials = tracking.search_runs(client, exp.experiment_id,
                                      f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
                                      "tags.`study.role` = 'trial' and attributes.status = 'FINISHED'")
        best = parent.data.tags.get("study.best_cell")
        trials.sort(key=lambda r: (tracking.run_name(r.data.tags).rpartition(" · ")[0] != best, r.info.start_time or 0))
        if trials:
            return {"experiment": exp.name, "experiment_id": exp.experiment_id, "parent_name": parent.info.run_name,
                    "primary_metric": parent.data.tags["study.primary_metric"], "run_id": trials[0].info.run_id,
                    "run_name": trials[0].info.run_name}
    return None
