"""Bad input stops `study run` with one line and exit 2, before either store is created; the PostgreSQL path."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from tests.orchestrate_helpers import REPO, TINY_STUDY, calls, env_for, make_experiments, run_fake, study_cli

BAD_STUDIES = {
    "unknown_key": "colour = 1\n" + TINY_STUDY,
    "wrong_type": TINY_STUDY.replace("seeds = 2", 'seeds = "two"'),
    "empty_axis": TINY_STUDY.replace("[0.5, 0.75, 0.9]", "[]"),
    "no_such_key": TINY_STUDY.replace('"model.mask_ratio" = [', '"model.mask_rate" = ['),
    "bad_metric": 'primary_metric = "davis.jf_median"\n' + TINY_STUDY,
}


@pytest.mark.parametrize("args, expect", [
    (["nope"], "no study named 'nope'"),
    (["unknown_key"], "unknown key 'colour'"),
    (["wrong_type"], "seeds must be"),
    (["empty_axis"], "must be a non-empty list"),
    (["no_such_key"], "unknown config key 'model.mask_rate'"),
    (["bad_metric"], "primary_metric 'davis.jf_median' is unknown"),
    (["tiny", "--budget", "huge"], "--budget 'huge' is unknown"),
    (["tiny", "--budget", "paper"], "set data.root, eval.davis_root in experiments/local.toml"),
    (["tiny", "--set", "model.mask_ratio_f1=2"], "out of range"),
    (["tiny", "--set", "model.mask_ratio=0.3"], "--set model.mask_ratio: model.mask_ratio is an axis of study tiny"),
    (["tiny", "--set", "train.seed=3"], "--set train.seed: the seed is an axis of every study; give --seeds N"),
    (["../../elsewhere/evil"], "study name '../../elsewhere/evil': use letters, digits, '_' and '-' only"),
    (["tiny", "--storage", "redis://x"], "--storage 'redis://x'"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, expect):
    make_experiments(tmp_path, {"tiny": TINY_STUDY, **BAD_STUDIES})
    (tmp_path / "elsewhere").mkdir()  # what experiments/studies/../../elsewhere/evil.toml would have loaded
    (tmp_path / "elsewhere" / "evil.toml").write_text(TINY_STUDY)
    r = subprocess.run([sys.executable, "-m", "study.cli", "run", *args], cwd=REPO, env=env_for(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not (tmp_path / "state").exists()  # neither the Optuna nor the MLflow store was opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "experiments"]


@pytest.mark.parametrize("command", [["status"], ["show"], ["report"], ["run", "--dry-run"]])
def test_a_study_name_is_a_plain_name_in_every_command(tmp_path, command):
    make_experiments(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "evil.toml").write_text(TINY_STUDY)
    r = subprocess.run([sys.executable, "-m", "study.cli", command[0], "../../elsewhere/evil", *command[1:]], cwd=REPO,
                       env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: study name '../../elsewhere/evil': use letters, digits, '_' and '-' only (the name of a file "
        "experiments/studies/NAME.toml), e.g. mask_ratio"], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "experiments"]


@pytest.mark.slow
def test_set_values_make_another_study_named_with_them(tmp_path):
    """--set train.blr=... on a study that ran without it is another study, in both stores, found again by the same
    flags; the dry run shows it; the parent run records the values as tag study.overrides."""
    import json

    import optuna
    from mlflow.tracking import MlflowClient

    from study.tracking import fetch_study_runs

    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--seeds", "1", "--set", "train.blr=1e-2", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "tiny [smoke] train.blr=0.01: 4 runs (dry run" in r.stdout, r.stdout
    assert "--set values (part of the study's name): train.blr=0.01" in r.stdout
    assert not (tmp_path / "state").exists()
    assert run_fake(tmp_path, "tiny", "--seeds", "1").returncode == 0
    r = run_fake(tmp_path, "tiny", "--seeds", "1", "--set", "train.blr=1e-2")
    assert r.returncode == 0, r.stderr
    assert "study tiny [smoke] train.blr=0.01: 4 new, 0 to resume" in r.stdout, r.stdout  # not "0 new": not mixed
    assert [c["blr"] for c in calls(tmp_path)] == [0.03] * 3 + [0.01] * 3
    url, uri = f"sqlite:///{tmp_path / 'state' / 'optuna.db'}", f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert sorted(optuna.get_all_study_names(url)) == ["tiny [smoke]", "tiny [smoke] train.blr=0.01"]
    client = MlflowClient(uri)
    for name, tag in (("tiny [smoke]", []), ("tiny [smoke] train.blr=0.01", ["train.blr=0.01"])):
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], "tags.`study.role` = 'parent'")
        assert [json.loads(p.data.tags["study.overrides"]) for p in runs] == [tag]
    for sets, blr in (([], "0.03"), (["train.blr=0.01"], "0.01")):
        runs = fetch_study_runs("tiny", "smoke", uri, sets)  # what `study report tiny [--set ...]` reads
        assert len(runs) == 4 and {r["params"]["train.blr"] for r in runs if r["role"] == "trial"} == {blr}
    r = study_cli(tmp_path, "status", "tiny", "--set", "train.blr=0.010")
    assert r.returncode == 0 and "tiny [smoke] train.blr=0.01: davis.jf_mean" in r.stdout, r.stdout + r.stderr
    assert "4/4 done" in r.stdout


@pytest.mark.slow
def test_three_workers_on_postgresql_run_every_cell_exactly_once(tmp_path, postgres_url):
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--workers", "3", "--storage", postgres_url, FAKE_STEPS="3", FAKE_STEP_S="0.2")
    assert r.returncode == 0, r.stderr
    assert "8/8 done" in r.stdout  # 2 seeds x 3 cells and random init at each seed
    started = Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path))
    assert started == {(m, s): 1 for m in (0.5, 0.75, 0.9) for s in (0, 1)}
    import optuna

    study = optuna.load_study(study_name="tiny [smoke]", storage=postgres_url)
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 8}
    assert sorted(t.value for t in study.trials) == [10.0, 10.0, 50.0, 51.0, 75.0, 76.0, 90.0, 91.0]
