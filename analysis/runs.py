"""Run records (from `study.tracking.fetch_study_runs`) -> one polars frame -> per-cell mean / std / n over seeds.

The records are plain dicts (the shared schema); they become polars here, once. Everything after this works on frames.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from analysis.protocol import protocol_label
from study.metrics import ALL_METRICS
from study.studies import Cell, StudySpec

# The order a seed's runs are ranked in when a (cell, seed) has several runs (a retry after a failure, a resumed run):
# a finished run wins, then one still running, then the newest failure.
STATUS_RANK = {"FINISHED": 0, "RUNNING": 1, "SCHEDULED": 1, "FAILED": 2, "KILLED": 2}


def canonical_key(key: str | dict | None) -> str | None:
    """The cell identity as sorted-key JSON, so that spacing or key order in the tag cannot split a cell in two."""
    if key is None or key == "":
        return None
    try:
        value = json.loads(key) if isinstance(key, str) else key
    except json.JSONDecodeError:
        return key
    return json.dumps(value, sort_keys=True)


def runs_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per run: identity, role, status, seed, duration and every final metric as its own Float64 column."""
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        start, end = r.get("start_time"), r.get("end_time")
        rows.append({
            "run_id": r.get("run_id"), "role": r.get("role") or "trial", "status": (r.get("status") or "").upper(),
            "study": r.get("study"), "budget": r.get("budget"), "cell": r.get("cell") or "",
            "cell_key": canonical_key(r.get("cell_key")), "is_default": bool(r.get("is_default", False)),
            "seed": r.get("seed"), "trial_number": r.get("trial_number"),
            "start_time": start, "end_time": end,
            "duration_s": (end - start) / 1000.0 if start is not None and end is not None else None,
            "failure": r.get("failure"), "artifact_dir": r.get("artifact_dir"),
            "protocol": protocol_label(r.get("params") or {}),
            **{m: _as_float(metrics.get(m)) for m in ALL_METRICS},
        })
    schema = {"run_id": pl.String, "role": pl.String, "status": pl.String, "study": pl.String, "budget": pl.String,
              "cell": pl.String, "cell_key": pl.String, "is_default": pl.Boolean, "seed": pl.Int64,
              "trial_number": pl.Int64, "start_time": pl.Int64, "end_time": pl.Int64, "duration_s": pl.Float64,
              "failure": pl.String, "artifact_dir": pl.String, "protocol": pl.String, **{m: pl.Float64 for m in ALL_METRICS}}
    return pl.DataFrame(rows, schema=schema)


def _as_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if f != f else f  # NaN -> null: a NaN metric is no measurement


def loss_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """Long frame of training-loss points of the trials: cell, seed, step, loss."""
    rows = [(r.get("cell") or "", r.get("seed"), int(step), float(value))
            for r in records if (r.get("role") or "trial") == "trial"
            for step, value in (r.get("loss_history") or [])]
    return pl.DataFrame(rows, schema={"cell": pl.String, "seed": pl.Int64, "step": pl.Int64, "loss": pl.Float64},
                        orient="row")


def study_cells(frame: pl.DataFrame, spec: StudySpec) -> list[Cell]:
    """The rows of the table: the study's cells in file order, then cells seen only in the runs (a search study's
    trials, or cells of an older version of the study file) in trial order."""
    cells = [] if spec.is_search else list(spec.cells())
    known = {canonical_key(c.key) for c in cells} | {c.label for c in cells}
    trials = frame.filter(pl.col("role") == "trial").sort("trial_number", nulls_last=True)
    for row in trials.iter_rows(named=True):
        if row["cell_key"] in known or row["cell"] in known:
            continue
        overrides = json.loads(row["cell_key"]) if row["cell_key"] else {}
        cells.append(Cell(label=row["cell"] or row["cell_key"] or "?", overrides=overrides, is_default=row["is_default"]))
        known |= {row["cell_key"], row["cell"]}
    return cells


def best_run_per_seed(trials: pl.DataFrame) -> pl.DataFrame:
    """Collapse several runs of one (cell, seed) into the one that counts (see STATUS_RANK)."""
    ranked = trials.with_columns(pl.col("status").replace_strict(STATUS_RANK, default=3, return_dtype=pl.Int64)
                                 .alias("_rank"))
    return (ranked.sort(["_rank", "start_time"], descending=[False, True], nulls_last=True)
            .unique(subset=["_cell", "seed"], keep="first", maintain_order=True).drop("_rank"))


def _match_cells(frame: pl.DataFrame, cells: list[Cell]) -> pl.DataFrame:
    """Attach the table row index `_cell` to each run: by cell key, else by label."""
    by_key = {canonical_key(c.key): i for i, c in enumerate(cells)}
    by_label = {c.label: i for i, c in enumerate(cells)}
    index = [by_key.get(k, by_label.get(lbl)) for k, lbl in zip(frame["cell_key"], frame["cell"])]
    return frame.with_columns(pl.Series("_cell", index, dtype=pl.Int64))


def expected_seeds(frame: pl.DataFrame, spec: StudySpec) -> list[int]:
    """The seeds every cell should have: those any trial of the study ran with, else the study file's."""
    present = frame.filter((pl.col("role") == "trial") & pl.col("seed").is_not_null())["seed"].unique().sort()
    return present.to_list() if len(present) else list(spec.seeds)


def cell_summary(frame: pl.DataFrame, spec: StudySpec, metrics: list[str] | tuple[str, ...]) -> pl.DataFrame:
    """Per cell (every cell of the study, in its order): `<metric>.mean`, `.std` (ddof=1, null for n=1), `.values`
    (the per-seed values, for the statistics), n (finished seeds), n_failed, n_running, n_missing, n_expected, state."""
    cells = study_cells(frame, spec)
    seeds = expected_seeds(frame, spec)
    trials = _match_cells(frame.filter(pl.col("role") == "trial"), cells).filter(pl.col("_cell").is_not_null())
    trials = best_run_per_seed(trials)
    rows = []
    for i, cell in enumerate(cells):
        mine = trials.filter(pl.col("_cell") == i)
        done = mine.filter(pl.col("status") == "FINISHED").sort("seed", nulls_last=True)
        n_failed = mine.filter(pl.col("status").is_in(["FAILED", "KILLED"])).height
        n_running = mine.filter(pl.col("status").is_in(["RUNNING", "SCHEDULED"])).height
        cell_seeds = set(mine["seed"].drop_nulls().to_list())
        n_expected = len(set(seeds) | cell_seeds)
        row = {"cell": cell.label, "cell_key": canonical_key(cell.key), "is_default": cell.is_default,
               "n": done.height, "n_failed": n_failed, "n_running": n_running,
               "n_missing": max(n_expected - mine.height, 0), "n_expected": n_expected,
               "state": _state(done.height, n_failed, n_running, n_expected),
               "failure": next(iter(mine["failure"].drop_nulls().to_list()), None),
               "artifact_dirs": done["artifact_dir"].drop_nulls().to_list(),
               "protocols": sorted(set(done["protocol"].to_list())),
               "duration_s": done["duration_s"].mean() if done.height else None}
        for m in metrics:
            values = done[m].drop_nulls().to_list()
            row[f"{m}.values"] = values
            row[f"{m}.mean"] = sum(values) / len(values) if values else None
            row[f"{m}.std"] = float(pl.Series(values).std(ddof=1)) if len(values) >= 2 else None
        rows.append(row)
    return pl.DataFrame(rows, schema=_summary_schema(metrics))


def baseline_summary(frame: pl.DataFrame, metrics: list[str] | tuple[str, ...]) -> dict[str, Any] | None:
    """The random-init reference: the finished baseline runs averaged (usually one). None when there is none."""
    done = frame.filter((pl.col("role") == "baseline") & (pl.col("status") == "FINISHED"))
    if not done.height:
        return None
    row: dict[str, Any] = {"cell": "random init", "n": done.height, "protocols": sorted(set(done["protocol"].to_list()))}
    for m in metrics:
        values = done[m].drop_nulls().to_list()
        row[f"{m}.values"] = values
        row[f"{m}.mean"] = sum(values) / len(values) if values else None
        row[f"{m}.std"] = float(pl.Series(values).std(ddof=1)) if len(values) >= 2 else None
    return row


def _state(n: int, n_failed: int, n_running: int, n_expected: int) -> str:
    """complete | partial (some seeds done, some not) | running | failed | missing."""
    if n >= n_expected:
        return "complete"
    if n:
        return "partial"
    if n_running:
        return "running"
    return "failed" if n_failed else "missing"


def _summary_schema(metrics) -> dict[str, Any]:
    schema = {"cell": pl.String, "cell_key": pl.String, "is_default": pl.Boolean, "n": pl.Int64, "n_failed": pl.Int64,
              "n_running": pl.Int64, "n_missing": pl.Int64, "n_expected": pl.Int64, "state": pl.String,
              "failure": pl.String, "artifact_dirs": pl.List(pl.String), "protocols": pl.List(pl.String), "duration_s": pl.Float64}
    for m in metrics:
        schema |= {f"{m}.values": pl.List(pl.Float64), f"{m}.mean": pl.Float64, f"{m}.std": pl.Float64}
    return schema
