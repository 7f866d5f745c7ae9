"""What a study leaves in MLflow for the UI and the report: the experiment's kind, run names that say cell and seed,
the per-cell summary and best cell on the parent run, the saved runs view, and the parent's provenance tags."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from study import provenance, tracking, tracking_summary
from tests.orchestrate_helpers import REPO, make_experiments, run_fake


@pytest.fixture(scope="module")
def fake_study(tmp_path_factory):
    """The tiny study (mask ratio 0.5 / 0.75 / 0.9 x seeds 0, 1, + random init) run with the fake trial:
    J&F = 100 x mask_ratio + seed, random init 10."""
    tmp = tmp_path_factory.mktemp("fake-study")
    make_experiments(tmp)
    r = run_fake(tmp, "tiny")
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp / 'state' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny [smoke]")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("study.role") == "parent")
    return tmp, client, exp, runs, parent


@pytest.mark.slow
def test_experiment_is_a_model_training_one(fake_study):
    _, _, exp, _, _ = fake_study
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_runs_are_named_by_cell_and_seed(fake_study):
    _, _, _, runs, _ = fake_study
    assert sorted(r.info.run_name for r in runs) == sorted(
        ["tiny [smoke]", "random init · seed 0", "random init · seed 1"]
        + [f"mask_ratio={m} · seed {s}" for m in ("0.5", "0.75", "0.9") for s in (0, 1)])


@pytest.mark.slow
def test_parent_carries_the_summary_per_cell_and_the_best_cell(fake_study):
    _, _, _, _, parent = fake_study
    m = parent.data.metrics
    assert m["summary/mask_ratio 0.9/mean"] == pytest.approx(90.5)
    assert m["summary/mask_ratio 0.9/std"] == pytest.approx(0.5 ** 0.5)  # stdev of 90 and 91
    assert m["summary/mask_ratio 0.9/n"] == 2
    assert m["summary/mask_ratio 0.5/mean"] == pytest.approx(50.5)
    assert m["summary/random init/mean"] == 10 and m["summary/random init/n"] == 2  # one per seed
    assert m["summary/best/mean"] == pytest.approx(90.5)
    tags = parent.data.tags
    assert tags["study.best_cell"] == "mask_ratio=0.9" and tags["study.primary_metric"] == "davis.jf_mean"
    assert "| **mask_ratio=0.9** | 2 | 90.50 | 0.71 |" in tags["mlflow.note.content"]
    assert "| random init | 2 | 10.00 | 0.00 |" in tags["mlflow.note.content"]


@pytest.mark.slow
def test_the_saved_runs_view_shows_the_primary_metric_grouped_by_cell(fake_study):
    _, _, exp, _, _ = fake_study
    view = json.loads(exp.tags["mlflow.sharedViewState.study"])
    state = json.loads(view["state"])
    assert "metrics.`davis.jf_mean`" in state["selectedColumns"]
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "study.cell"}]
    links = dict(tracking_summary.study_links("http://127.0.0.1:5000", tracking.default_tracking_uri(fake_study[0] / "state")))
    assert links["tiny [smoke]"] == (f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs"
                                     "?workflowType=machine_learning&viewStateShareKey=study")


@pytest.mark.slow
def test_parent_records_provenance(fake_study):
    tmp, _, _, _, parent = fake_study
    tags = parent.data.tags
    assert tags["study.command"].endswith("orchestrate_helpers.py tiny")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert tags["study.git_commit"] in (head, head + "-dirty")
    versions = json.loads(tags["study.versions"])
    assert set(versions) == {"python", "torch", "timm", "mlflow", "optuna", "polars", "numpy"}
    assert versions["mlflow"] == mlflow.__version__
    assert tags["study.state_dir"] == str((tmp / "state").resolve())
    assert tags["study.storage"] == f"sqlite:///{(tmp / 'state').resolve() / 'optuna.db'}"


def test_summary_picks_the_lowest_cell_when_the_study_minimizes(tmp_path):
    uri = tracking.default_tracking_uri(tmp_path)
    exp = tracking.ensure_experiment("lower", "smoke", uri, tmp_path / "art")
    parent = tracking.start_parent_run(exp, uri, {"study.name": "lower", "study.budget": "smoke"}, state=tmp_path)
    client = MlflowClient(uri)
    for cell, seed, value in [("0.5", 0, 3.0), ("0.5", 1, 5.0), ("0.9", 0, 7.0)]:
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, "study.role": "trial", "study.cell": cell,
                                           "study.cell_key": json.dumps({"model.mask_ratio": float(cell)}),
                                           "study.seed": str(seed)})
        client.log_metric(run.info.run_id, "davis.j_decay", value)
        client.set_terminated(run.info.run_id)
    summary = tracking_summary.update_study_summary(parent, uri, exp, "davis.j_decay", "minimize")
    assert summary["mask_ratio=0.5"] == {"mean": 4.0, "std": pytest.approx(2 ** 0.5), "n": 2.0}
    assert client.get_run(parent).data.tags["study.best_cell"] == "mask_ratio=0.5"
    assert client.get_run(parent).data.metrics["summary/best/mean"] == 4.0


def test_an_experiment_made_before_the_kind_existed_gets_it_and_a_chosen_kind_stays(tmp_path):
    uri = tracking.default_tracking_uri(tmp_path)
    client = MlflowClient(uri)
    old = client.create_experiment("old [smoke]")
    assert tracking.ensure_experiment("old", "smoke", uri, None) == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(old, "mlflow.experimentKind", "genai_development")  # the user chose it in the UI
    tracking.ensure_experiment("old", "smoke", uri, None)
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "genai_development"


def test_cell_names_name_the_axis_of_a_one_axis_study_only():
    assert tracking.cell_name("0.9", json.dumps({"model.mask_ratio": 0.9})) == "mask_ratio=0.9"
    assert tracking.cell_name("[4, 48]", json.dumps({"data.frame_gap": [4, 48]})) == "frame_gap=[4, 48]"
    both = json.dumps({"model.encoder": "joint", "model.decoder": "cross"})
    assert tracking.cell_name("encoder=joint, decoder=cross", both) == "encoder=joint, decoder=cross"
    assert tracking.cell_name("tube masking", json.dumps({"model.mask_strategy": "tube"})) == "tube masking"
    assert tracking.run_name({"study.role": "baseline", "study.cell": "random init", "study.seed": "1"}) == \
        "random init · seed 1"


def test_storage_urls_lose_their_password_only():
    assert provenance.redact_url("postgresql+psycopg2://alice:s3cret@db.lab:5432/studies") == \
        "postgresql+psycopg2://alice@db.lab:5432/studies"
    assert provenance.redact_url("postgresql://:s3cret@db.lab/studies") == "postgresql://db.lab/studies"
    assert provenance.redact_url("sqlite:////home/a/.study/optuna.db") == "sqlite:////home/a/.study/optuna.db"
    assert provenance.redact_url("postgresql:///studies") == "postgresql:///studies"


def test_command_line_is_shell_quoted_and_names_the_entry_point_study():
    assert provenance.command_line(["/opt/venv/bin/study", "run", "mask_ratio", "--set", "train.note=a b"]) == \
        "study run mask_ratio --set 'train.note=a b'"
    assert provenance.command_line(["/repo/study/cli.py", "run", "x"]) == "study run x"


def test_git_commit_is_head_plus_dirty_and_unknown_outside_git(tmp_path):
    assert provenance.git_commit(tmp_path) == "unknown"
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (repo / "notes.txt").write_text("untracked files do not make a checkout dirty\n")
    assert provenance.git_commit(repo) == head
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_commit(repo) == head + "-dirty"
