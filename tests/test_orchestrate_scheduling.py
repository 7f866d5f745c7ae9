"""Scheduling for real: Optuna queue + MLflow runs, with a fake trial (fast, checkpoints and resumes like run_trial).
kill -9 and resume are tested with the real trial in test_orchestrate_e2e.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.orchestrate_helpers import calls, make_experiments, run_fake


def _runs(tmp: Path) -> list[dict]:
    from study.tracking import fetch_study_runs

    return fetch_study_runs("tiny", "smoke", f"sqlite:///{tmp / 'state' / 'mlflow.db'}")


def _mlflow_roles(tmp: Path) -> Counter:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'state' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny [smoke]")
    return Counter((r.data.tags.get("study.role"), r.info.status) for r in client.search_runs([exp.experiment_id]))


@pytest.mark.slow
def test_four_workers_run_every_cell_exactly_once_and_track_it(tmp_path):
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--workers", "4", FAKE_STEPS="4", FAKE_STEP_S="0.2")
    assert r.returncode == 0, r.stderr
    started = Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path))
    assert started == {(m, s): 1 for m in (0.5, 0.75, 0.9) for s in (0, 1)}
    assert len({c["pid"] for c in calls(tmp_path)}) >= 2  # the work really was shared
    runs = _runs(tmp_path)
    trials = sorted((r["cell"], r["seed"], r["metrics"]["davis.jf_mean"]) for r in runs if r["role"] == "trial")
    assert trials == [("0.5", 0, 50.0), ("0.5", 1, 51.0), ("0.75", 0, 75.0), ("0.75", 1, 76.0),
                      ("0.9", 0, 90.0), ("0.9", 1, 91.0)]
    assert all(r["status"] == "FINISHED" for r in runs)
    assert sorted((r["cell"], r["seed"]) for r in runs if r["role"] == "baseline") == [("random init", 0), ("random init", 1)]
    default = [r for r in runs if r["is_default"]]
    assert sorted(r["seed"] for r in default) == [0, 1] and all(r["cell"] == "0.9" for r in default)
    one = next(r for r in runs if r["role"] == "trial")
    assert one["params"]["model.mask_ratio"] == one["cell"] and one["params"]["model.preset"] == "micro"
    assert one["loss_history"] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.25)]
    assert (Path(one["artifact_dir"]) / "config.toml").is_file()
    assert _mlflow_roles(tmp_path)[("parent", "FINISHED")] == 1


@pytest.mark.slow
def test_a_failing_cell_keeps_its_cause_does_not_stop_the_others_and_retry_failed_reruns_it(tmp_path):
    import optuna

    make_experiments(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "fail-0.75").write_text("")
    r = run_fake(tmp_path, "tiny")
    assert r.returncode == 1, r.stderr  # not 0: the study is not done; not 2: no bad input
    assert r.stderr.strip().splitlines()[-1] == (
        "error: 2 of 8 runs failed (0.75 seed 0, 0.75 seed 1); their reasons are in `study status tiny --budget smoke`;"
        " fix the cause, then `study run tiny --budget smoke --retry-failed`")
    assert 'raise RuntimeError(f"boom at mask ratio' in r.stderr  # the traceback is logged, not only repr(e)
    runs = _runs(tmp_path)
    failed = [r for r in runs if r["status"] == "FAILED"]
    assert sorted((r["cell"], r["seed"]) for r in failed) == [("0.75", 0), ("0.75", 1)]
    assert failed[0]["failure"] == "RuntimeError('boom at mask ratio 0.75')"
    saved = (Path(failed[0]["artifact_dir"]) / "failure.txt").read_text()  # the MLflow artifact
    assert saved.startswith("Traceback") and "in fake_trial" in saved and saved.rstrip().endswith(
        "RuntimeError: boom at mask ratio 0.75")
    study = optuna.load_study(study_name="tiny [smoke]", storage=f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    fails = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs["failure"] for t in fails] == ["RuntimeError('boom at mask ratio 0.75')"] * 2
    assert all("in fake_trial" in t.user_attrs["failure_traceback"] for t in fails)
    assert sum(r["status"] == "FINISHED" for r in runs) == 6  # 0.5 and 0.9 and random init, 2 seeds each
    assert _mlflow_roles(tmp_path)[("parent", "FAILED")] == 1
    r = run_fake(tmp_path, "tiny")  # without --retry-failed nothing is rerun
    assert "0 new, 0 to resume, 0 to retry" in r.stdout and r.returncode == 1
    (tmp_path / "state" / "fail-0.75").unlink()
    r = run_fake(tmp_path, "tiny", "--retry-failed")
    assert r.returncode == 0 and "2 to retry" in r.stdout, r.stdout + r.stderr
    runs = _runs(tmp_path)
    assert len(runs) == 8 and all(r["status"] == "FINISHED" for r in runs)
    assert sorted(r["metrics"]["davis.jf_mean"] for r in runs if r["cell"] == "0.75") == [75.0, 76.0]
    assert _mlflow_roles(tmp_path)[("parent", "FINISHED")] == 1


@pytest.mark.slow
def test_cells_runs_only_the_chosen_cells_and_a_later_full_run_adds_the_rest(tmp_path):
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--cells", "0.5,0.9", FAKE_STEPS="2")
    assert r.returncode == 0, r.stderr  # the chosen cells are all the run was asked for: done, not "unfinished"
    assert Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path)) == {
        (m, s): 1 for m in (0.5, 0.9) for s in (0, 1)}
    assert "0.75" not in r.stdout.split("study tiny")[-1]  # the status table lists the chosen cells only
    r = run_fake(tmp_path, "tiny", FAKE_STEPS="2")
    assert r.returncode == 0, r.stderr
    assert Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path)) == {
        (m, s): 1 for m in (0.5, 0.75, 0.9) for s in (0, 1)}  # the earlier cells are not run again


def test_cells_names_an_unknown_label_in_one_line(tmp_path):
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--cells", "0.3")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --cells 0.3: not a cell of tiny; its cells are 0.5 | 0.75 | 0.9 (see `study show tiny`)")


def test_cells_whose_labels_hold_commas_are_split_by_the_study_labels():
    from study.orchestrate.commands import rerun_command
    from study.orchestrate.worker import Job
    from study.studies import load_study

    spec = load_study("masking")  # its labels hold commas: "symmetric 0.5, f2 loss"
    text = "asymmetric 0 / 0.95,symmetric 0.5, f2 loss, tube 0.9, f1+f2 loss"
    labels = spec.split_cells(text)
    assert labels == ["asymmetric 0 / 0.95", "symmetric 0.5, f2 loss", "tube 0.9, f1+f2 loss"]
    assert [c.label for c in spec.select(labels).cells()] == labels
    assert load_study("mask_ratio").split_cells("0.5, 0.95") == ["0.5", "0.95"]
    assert spec.split_cells("symmetric 0.5,nope") == ["symmetric 0.5", "nope"]  # for select to name
    job = Job("masking", "cpu", "postgresql://db/optuna", "", "", "", "s", 3, [], cells=labels)
    assert rerun_command(job) == ("study run masking --budget cpu --seeds 3 --cells 'asymmetric 0 / 0.95,symmetric "
                                  "0.5, f2 loss,tube 0.9, f1+f2 loss' --storage postgresql://db/optuna")  # pastes whole
