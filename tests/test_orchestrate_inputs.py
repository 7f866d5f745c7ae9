"""Bad input stops `study run` with one line and exit 2, before either store is created; the PostgreSQL path."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import pytest

from tests.orchestrate_helpers import REPO, TINY_STUDY, calls, env_for, make_experiments, run_fake

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
    (["tiny", "--set", "model.mask_ratio=2"], "out of range"),
    (["tiny", "--storage", "redis://x"], "--storage 'redis://x'"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, expect):
    make_experiments(tmp_path, {"tiny": TINY_STUDY, **BAD_STUDIES})
    r = subprocess.run([sys.executable, "-m", "study.cli", "run", *args], cwd=REPO, env=env_for(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not (tmp_path / "state").exists()  # neither the Optuna nor the MLflow store was opened


@pytest.fixture
def postgres_url():
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"study_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(dbname="postgres")
    except psycopg2.OperationalError as e:
        pytest.skip(f"no PostgreSQL server on the local socket ({str(e).strip().splitlines()[0]}); .ci/run starts one")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg2:///{name}"
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.mark.slow
def test_three_workers_on_postgresql_run_every_cell_exactly_once(tmp_path, postgres_url):
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", "--workers", "3", "--storage", postgres_url, FAKE_STEPS="3", FAKE_STEP_S="0.2")
    assert r.returncode == 0, r.stderr
    assert "7/7 done" in r.stdout
    started = Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path))
    assert started == {(m, s): 1 for m in (0.5, 0.75, 0.9) for s in (0, 1)}
    import optuna

    study = optuna.load_study(study_name="tiny [smoke]", storage=postgres_url)
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 7}
    assert sorted(t.value for t in study.trials) == [10.0, 50.0, 51.0, 75.0, 76.0, 90.0, 91.0]
