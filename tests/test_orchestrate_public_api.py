"""The scheduler goes through Optuna's public API only, and the worker's Job stays a stable JSON contract (a cluster
launcher starts `python -m study.orchestrate.worker '<job json>'`)."""

from __future__ import annotations

import json
import re
from dataclasses import fields

from tests.orchestrate_helpers import REPO

PRIVATE = re.compile(r"\._(storage|trial_id|study_id)\b")


def test_no_project_module_reads_optunas_private_attributes():
    files = [*(REPO / "study").rglob("*.py"), *(REPO / "analysis").rglob("*.py")]
    offenders = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in files
                 for i, line in enumerate(p.read_text().splitlines(), 1) if PRIVATE.search(line)]
    assert offenders == []


def test_a_job_travels_as_json_with_its_stable_fields():
    from study.orchestrate.worker import Job, job_json

    job = Job("mask_ratio", "cpu", "sqlite:///o.db", "sqlite:///m.db", "1", "abc", "/state", 2, ["train.blr=1e-2"], 4)
    assert Job(**json.loads(job_json(job))) == job
    assert {"study", "budget", "storage", "tracking_uri", "experiment_id", "parent_run_id", "state", "seeds",
            "overrides", "threads", "trial_fn", "baseline_fn"} <= {f.name for f in fields(Job)}
    assert job.name == "mask_ratio [cpu] train.blr=0.01"
