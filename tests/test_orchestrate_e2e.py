"""Whole studies with the real trial (train + DAVIS evaluation at the smoke budget) through the real `study` CLI:
run, status, report; kill -9 mid-training and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.orchestrate_helpers import REPO, TWO_CELLS, env_for, make_experiments, study_cli

STUDY = "two"


def _client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp / 'state' / 'mlflow.db'}")


def _runs(tmp: Path, sets: str) -> list:
    client = _client(tmp)
    exp = client.get_experiment_by_name(f"{STUDY} [smoke] {sets}")  # a study run with --set values is named with them
    return client.search_runs([exp.experiment_id])


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for a in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def _check_one_parent_with_children(tmp: Path, sets: str) -> list:
    """One FINISHED parent; every other run is its child; exactly one FINISHED run per cell. -> the children."""
    runs = _runs(tmp, sets)
    parents = [r for r in runs if r.data.tags.get("study.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r is not parents[0]]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parents[0].info.run_id}
    assert Counter((r.data.tags["study.role"], r.data.tags["study.cell"], r.info.status) for r in children) == {
        ("baseline", "random init", "FINISHED"): 1, ("trial", "0.75", "FINISHED"): 1, ("trial", "0.9", "FINISHED"): 1}
    return children


@pytest.mark.slow
def test_a_real_smoke_study_runs_tracks_reports_end_to_end(tmp_path):
    make_experiments(tmp_path, {STUDY: TWO_CELLS})
    r = study_cli(tmp_path, "run", STUDY, "--budget", "smoke", "--set", "train.epochs=4")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 new, 0 to resume" in r.stdout and "3/3 done" in r.stdout, r.stdout

    client = _client(tmp_path)
    children = _check_one_parent_with_children(tmp_path, "train.epochs=4")
    for run in children:
        assert 0 <= run.data.metrics["davis.jf_mean"] <= 100
        assert {"davis.j_mean", "davis.f_mean", "eval.wall_s"} <= set(run.data.metrics)
        assert run.data.params["model.mask_ratio"] == ("0.9" if run.data.tags["study.role"] == "baseline"
                                                       else run.data.tags["study.cell"])
    trials = [r for r in children if r.data.tags["study.role"] == "trial"]
    for run in trials:
        loss = [m.value for m in client.get_metric_history(run.info.run_id, "train.loss")]
        assert len(loss) >= 2 and all(v > 0 for v in loss)  # logged every 5 steps and at the last one
        assert run.data.metrics["train.steps"] == 6 and run.data.metrics["train.resumed_from"] == 0
        artifacts = _artifacts(client, run.info.run_id)
        assert {"config.toml", "recon.png", "eval/davis/summary.json"} <= artifacts, artifacts
        sheets = [a for a in artifacts if a.startswith("eval/davis/contact_") and a.endswith(".png")]
        assert sheets, f"no DAVIS contact sheet among the artifacts {sorted(artifacts)}"

    r = study_cli(tmp_path, "status", STUDY, "--budget", "smoke", "--set", "train.epochs=4")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3 and all("│ done " in line for line in rows), r.stdout
    assert {line.split("│")[1].strip() for line in rows} == {"random init", "0.75", "0.9"}
    assert "3/3 done" in r.stdout

    from study.tracking import fetch_study_runs

    fetched = fetch_study_runs(STUDY, "smoke", f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}", ["train.epochs=4"])
    assert sorted((f["role"], f["cell"], f["status"]) for f in fetched) == [
        ("baseline", "random init", "FINISHED"), ("trial", "0.75", "FINISHED"), ("trial", "0.9", "FINISHED")]
    assert all(len(f["loss_history"]) >= 2 for f in fetched if f["role"] == "trial")

    out = tmp_path / "report"
    r = study_cli(tmp_path, "report", STUDY, "--budget", "smoke", "--set", "train.epochs=4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    md = (out / "report.md").read_text()
    values = {f["cell"]: f["metrics"]["davis.jf_mean"] for f in fetched}
    for row_start, cell in [("| 0.75 |", "0.75"), ("| 0.9 (default) |", "0.9"), ("| random init |", "random init")]:
        row = next((line for line in md.splitlines() if line.startswith(row_start)), None)
        assert row is not None, f"no row {row_start!r} in\n{md}"
        assert f"{values[cell]:.1f}" in row  # the table shows this cell's J&F


@pytest.mark.slow
def test_kill9_mid_training_then_run_again_resumes_from_the_checkpoint(tmp_path):
    make_experiments(tmp_path, {STUDY: TWO_CELLS})
    args = ["run", STUDY, "--budget", "smoke", "--set", "train.epochs=10", "--set", "train.checkpoint_every=2"]
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env_for(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, runs_dir = time.time() + 300, tmp_path / "state" / "runs"
    while time.time() < deadline and proc.poll() is None and not any(runs_dir.glob("*/*/checkpoint.pt")):
        time.sleep(0.1)
    assert proc.poll() is None, "the study ended before any trial wrote a checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole tree, mid-training
    proc.wait()
    sets = "train.checkpoint_every=2 train.epochs=10"
    assert Counter(r.info.status for r in _runs(tmp_path, sets) if r.data.tags["study.role"] == "trial") == {"RUNNING": 1}
    r = study_cli(tmp_path, "status", STUDY, "--budget", "smoke", *args[4:])
    states = Counter(line.split("│")[3].strip() for line in r.stdout.splitlines() if line.startswith("│"))
    assert states == {"done": 1, "interrupted": 1, "waiting": 1}, r.stdout  # the dead worker's cell is not "running"

    r = study_cli(tmp_path, "run", *args[1:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "0 new, 1 to resume" in r.stdout and "3/3 done" in r.stdout, r.stdout
    children = _check_one_parent_with_children(tmp_path, sets)  # the resumed trial reused its MLflow run
    trials = [c for c in children if c.data.tags["study.role"] == "trial"]
    resumed = [c for c in trials if c.data.metrics["train.resumed_from"] > 0]
    assert len(resumed) == 1, [c.data.metrics for c in trials]
    total = resumed[0].data.metrics["train.steps"]
    assert total == 15 and resumed[0].data.metrics["train.resumed_from"] < total
    assert all(c.data.metrics["train.steps"] == total for c in trials)
    steps = [m.step for m in _client(tmp_path).get_metric_history(resumed[0].info.run_id, "train.loss")]
    assert steps[-1] == total


@pytest.mark.slow
def test_a_nan_loss_fails_its_cell_with_the_reason_and_the_study_goes_on(tmp_path):
    make_experiments(tmp_path, {"nan": TWO_CELLS.replace('"model.mask_ratio" = [0.75, 0.9]', '"train.blr" = [1e12, 0.03]')
                                .replace('"model.mask_ratio" = 0.9', '"train.blr" = 0.03')})
    r = study_cli(tmp_path, "run", "nan", "--budget", "smoke", "--set", "train.epochs=4")
    assert r.returncode == 1, r.stderr[-3000:]  # a training failure: recorded, the study went on, not bad input
    assert "2/3 done" in r.stdout, r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: 1 of 3 runs failed ({1e12} seed 0)")
    assert "Traceback" not in r.stderr  # the trial named its failure: one line, no traceback
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("nan [smoke] train.epochs=4").experiment_id])
    by_cell = {r.data.tags["study.cell"]: r for r in runs if r.data.tags["study.role"] != "parent"}
    failed = by_cell[str(1e12)]  # queued before 0.03, which still ran
    assert failed.info.status == "FAILED"
    assert failed.data.tags["study.failure"].startswith("training stopped: the loss is nan at step")
    assert by_cell["0.03"].info.status == "FINISHED" and by_cell["random init"].info.status == "FINISHED"
