"""A TPE search study (the shipped experiments/studies/lr_temperature.toml) with the fake trial: its N trials run once
each, with params drawn inside the declared ranges and handed to the trial's config."""

from __future__ import annotations

import math
import shutil
import tomllib

import pytest

from tests.orchestrate_helpers import REPO, calls, make_experiments, run_fake


@pytest.mark.slow
def test_a_tpe_search_runs_its_trials_with_params_inside_the_ranges(tmp_path, monkeypatch):
    exp = make_experiments(tmp_path, {})
    monkeypatch.setenv("STUDY_EXPERIMENTS", str(exp))
    shutil.copy(REPO / "experiments" / "studies" / "lr_temperature.toml", exp / "studies")
    spec = tomllib.loads((exp / "studies" / "lr_temperature.toml").read_text())["search"]
    n, ranges = spec["trials"], {k: (p["low"], p["high"]) for k, p in spec["params"].items()}
    assert set(ranges) == {"train.blr", "eval.temperature"}

    from study.orchestrate.worker import make_sampler
    from study.studies import load_study

    import optuna

    assert isinstance(make_sampler(load_study("lr_temperature")), optuna.samplers.TPESampler)
    r = run_fake(tmp_path, "lr_temperature", FAKE_STEPS="2", FAKE_STEP_S="0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{n + 1}/{n + 1} done" in r.stdout, r.stdout  # the N trials and the random-init baseline

    study = optuna.load_study(study_name="lr_temperature [smoke]", storage=f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    trials = [t for t in study.trials if t.user_attrs.get("role") == "trial"]
    assert len(trials) == n and all(t.state.name == "COMPLETE" for t in trials)
    params = [(t.params["train.blr"], t.params["eval.temperature"]) for t in trials]
    assert len(set(params)) == n  # every trial a new point
    for blr, temperature in params:
        assert ranges["train.blr"][0] <= blr <= ranges["train.blr"][1]
        assert ranges["eval.temperature"][0] <= temperature <= ranges["eval.temperature"][1]
    # blr is searched on a log scale: the draws spread over its two decades, not only the top one
    assert min(math.log10(b) for b, _ in params) < -3 < max(math.log10(b) for b, _ in params)

    ran = [(c["blr"], c["temperature"]) for c in calls(tmp_path)]  # what each trial's config really held
    assert sorted(ran) == sorted(params)

    from study.tracking import fetch_study_runs

    runs = [x for x in fetch_study_runs("lr_temperature", "smoke", f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
            if x["role"] == "trial"]
    assert sorted((float(x["params"]["train.blr"]), float(x["params"]["eval.temperature"])) for x in runs) == sorted(params)

    r = run_fake(tmp_path, "lr_temperature")  # run again: the search is complete, nothing more runs
    assert r.returncode == 0 and "0 new, 0 to resume, 0 to retry" in r.stdout, r.stdout + r.stderr
    assert len(calls(tmp_path)) == n
