"""Hand-made run records in the shared schema (what `study.tracking.fetch_study_runs` returns), for the analysis tests."""

from __future__ import annotations

import json

from study.config_load import load_config
from study.studies import load_study

T0 = 1_767_000_000_000  # ms


def record(study: str, cell: str, seed: int | None, *, role: str = "trial", status: str = "FINISHED",
           metrics: dict | None = None, trial: int | None = None, failure: str | None = None,
           loss: list | None = None, artifact_dir: str | None = None, budget: str = "cpu",
           params: dict | None = None) -> dict:
    """One run as tracking returns it; its params are the real resolved config of that cell at `budget`, with
    `params` (e.g. {"eval.protocol": "dino"}) over them."""
    spec = load_study(study)
    cells = spec.cells()
    the_cell = next(c for c in cells if c.label == cell or (role == "baseline" and c.is_default))
    overrides, is_default = (the_cell.overrides, the_cell.is_default) if role == "trial" else ({}, False)
    resolved = {k: str(v) for k, v in load_config(budget, layers=spec.layers(the_cell, seed or 0, budget)).flat().items()}
    resolved |= {k: str(v) for k, v in (params or {}).items()}
    start = T0 + 1000 * (trial or 0)
    return {"run_id": f"{study}-{role}-{cell}-{seed}-{status}", "role": role, "status": status, "study": study,
            "budget": budget, "cell": cell, "cell_key": json.dumps(overrides, sort_keys=True), "is_default": is_default,
            "seed": seed, "trial_number": trial, "metrics": metrics or {},
            "params": resolved,
            "start_time": start, "end_time": start + 90_000 if status != "RUNNING" else None,
            "loss_history": loss or [], "artifact_dir": artifact_dir, "failure": failure}


def davis(jf: float, j: float, f: float) -> dict:
    return {"davis.jf_mean": jf, "davis.j_mean": j, "davis.f_mean": f}


def mask_ratio_records() -> list[dict]:
    """mask_ratio study (cells 0.5, 0.75, 0.9, 0.95 = default) with 2 seeds: 0.5 failed on both seeds, 0.75 finished
    on both (the best), 0.9 never ran (missing), 0.95 finished on both; plus one random-init baseline."""
    return [
        record("mask_ratio", "0.5", 0, status="FAILED", failure="NaN loss at step 12", trial=0),
        record("mask_ratio", "0.5", 1, status="FAILED", failure="NaN loss at step 12", trial=1),
        record("mask_ratio", "0.75", 0, metrics=davis(56.0, 54.0, 58.0), trial=2, loss=[(0, 1.0), (10, 0.8), (20, 0.7)]),
        record("mask_ratio", "0.75", 1, metrics=davis(56.4, 54.6, 58.2), trial=3, loss=[(0, 1.1), (10, 0.9), (20, 0.7)]),
        record("mask_ratio", "0.95", 0, metrics=davis(52.0, 50.0, 54.0), trial=6, loss=[(0, 1.0), (10, 0.7), (20, 0.6)]),
        record("mask_ratio", "0.95", 1, metrics=davis(52.6, 51.0, 54.2), trial=7, loss=[(0, 0.9), (10, 0.7), (20, 0.5)]),
        record("mask_ratio", "random init", 0, role="baseline", metrics=davis(44.4, 43.0, 45.8)),
    ]


def decoder_records() -> list[dict]:
    """decoder study (joint, cross-self = default, cross) with 2 seeds: joint still running, cross finished on one seed
    and failed on the other, cross-self finished on both; no baseline."""
    return [
        record("decoder", "joint", 0, status="RUNNING", trial=0),
        record("decoder", "cross-self", 0, metrics=davis(50.0, 49.0, 51.0), trial=1),
        record("decoder", "cross-self", 1, metrics=davis(51.0, 50.0, 52.0), trial=2),
        record("decoder", "cross", 0, metrics=davis(45.0, 44.0, 46.0), trial=3),
        record("decoder", "cross", 1, status="FAILED", failure="worker killed", trial=4),
    ]
