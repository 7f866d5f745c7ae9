"""`fetch_parent_run`: the report's provenance read back from a real MLflow store (sqlite): the newest parent run of
the study at that budget."""

import time

import pytest

from study import tracking


@pytest.mark.slow
def test_parent_run_read_back_newest_first(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.fetch_parent_run("mask_ratio", "cpu", uri) is None  # no experiment yet
    exp = tracking.ensure_experiment("mask_ratio", "cpu", uri, tmp_path / "art")
    other = tracking.ensure_experiment("mask_ratio", "smoke", uri, tmp_path / "art")
    tracking.start_parent_run(exp, uri, {"study.name": "mask_ratio", "study.command": "study run mask_ratio"})
    time.sleep(0.01)
    new = tracking.start_parent_run(exp, uri, {"study.name": "mask_ratio", "study.command": "study run mask_ratio --seeds 3",
                                               "study.versions": '{"torch": "2.14.1"}'})
    tracking.start_parent_run(other, uri, {"study.name": "mask_ratio", "study.command": "smoke"})
    child = tracking.TrialRun(uri, exp, new, {"study.role": "trial", "study.cell": "0.5"}, {}, system_metrics=False)
    child.end("FINISHED")
    got = tracking.fetch_parent_run("mask_ratio", "cpu", uri)
    assert got["run_id"] == new and got["tags"]["study.command"] == "study run mask_ratio --seeds 3"
    assert got["tags"]["study.versions"] == '{"torch": "2.14.1"}' and got["tags"]["study.role"] == "parent"
    assert tracking.fetch_parent_run("mask_ratio", "smoke", uri)["tags"]["study.command"] == "smoke"
    assert tracking.fetch_parent_run("mask_ratio", "paper", uri) is None
