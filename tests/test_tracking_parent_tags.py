"""`fetch_parent_tags`: the report's provenance read back from a real MLflow store (sqlite), newest parent first."""

import time

import pytest

from study import tracking


@pytest.mark.slow
def test_parent_tags_read_back_newest_first(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.fetch_parent_tags("mask_ratio", "cpu", uri) == []  # no experiment yet
    exp = tracking.ensure_experiment("mask_ratio", "cpu", uri, tmp_path / "art")
    other = tracking.ensure_experiment("mask_ratio", "smoke", uri, tmp_path / "art")
    old = tracking.start_parent_run(exp, uri, {"study.name": "mask_ratio", "study.command": "study run mask_ratio"})
    time.sleep(0.01)
    new = tracking.start_parent_run(exp, uri, {"study.name": "mask_ratio", "study.command": "study run mask_ratio --seeds 3",
                                               "study.versions": '{"torch": "2.14.1"}'})
    tracking.start_parent_run(other, uri, {"study.name": "mask_ratio", "study.command": "smoke"})
    child = tracking.TrialRun(uri, exp, new, {"study.role": "trial", "study.cell": "0.5"}, {}, system_metrics=False)
    child.end("FINISHED")
    got = tracking.fetch_parent_tags("mask_ratio", "cpu", uri)
    assert [t["study.command"] for t in got] == ["study run mask_ratio --seeds 3", "study run mask_ratio"]
    assert got[0]["study.versions"] == '{"torch": "2.14.1"}' and got[0]["study.role"] == "parent"
    assert old and tracking.fetch_parent_tags("mask_ratio", "paper", uri) == []
