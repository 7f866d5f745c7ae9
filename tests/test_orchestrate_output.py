"""What `study list`, the dry run and `study status` show people: every name and config key in full (80 columns, a
pipe), the visible patches and the evaluation in the estimate, the minutes and ETA of a running cell, and the live
progress line of a trial."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.orchestrate_helpers import REPO, TINY_STUDY, env_for, make_experiments


def _cli(tmp, *args, **env):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env_for(tmp, COLUMNS="80", **env),
                          capture_output=True, text=True, timeout=120)


def test_study_list_in_80_columns_through_a_pipe_shows_every_name_and_key_in_full(tmp_path):
    from study.studies import load_study, study_names

    r = _cli(tmp_path, "list", STUDY_EXPERIMENTS=str(REPO / "experiments"))
    assert r.returncode == 0, r.stderr
    names = study_names()
    assert {"encoder_decoder", "repeated_sampling"} <= set(names)
    words = set(r.stdout.replace(",", " ").replace("│", " ").split())
    assert set(names) <= words, set(names) - words
    keys = {k for n in names for k in load_study(n).factor_keys}
    assert keys <= words, keys - words
    assert "…" not in r.stdout


def test_the_dry_run_shows_full_keys_visible_patches_and_evaluation_time(tmp_path, monkeypatch, capsys):
    from study.config_load import load_config
    from study.orchestrate import plan
    from study.orchestrate.commands import run_command

    make_experiments(tmp_path, {"f1": TINY_STUDY.replace("model.mask_ratio", "model.mask_ratio_f1")
                                .replace("[0.5, 0.75, 0.9]", "[0.0, 0.5]").replace("= 0.9\n", "= 0.0\n")})
    for k, v in env_for(tmp_path, COLUMNS="80").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setitem(plan.MEASURED_EVAL_S, "smoke", 600.0)  # 10 min per evaluation, to see it in the minutes
    run_command("f1", budget="smoke", dry_run=True, overrides=["data.repeated_sampling=2"])
    out = capsys.readouterr().out
    rows = {tuple(c.strip() for c in line.split("│")[1:-1]) for line in out.splitlines() if line.startswith("│")}
    by_cell = {(row[0], row[1], row[2]): row[3:] for row in rows}
    m = load_config("smoke").model  # the smoke budget's sizes may change: counted here by MAE's len_keep
    patches = (m.img_size // m.patch_size) ** 2
    f2 = int(patches * (1 - m.mask_ratio))
    assert by_cell[("trial", "0.0", "0")][:2] == ("", f"f2 {f2}")  # f1 unmasked: only f2's count
    assert by_cell[("trial", "0.5", "1")][:2] == ("model.mask_ratio_f1=0.5", f"f1 {patches // 2}, f2 {f2}")
    assert by_cell[("baseline", "random init", "0")][-1] == "10.0"  # the baseline only evaluates, and that costs
    pairs = int(by_cell[("trial", "0.5", "1")][2])
    assert by_cell[("trial", "0.5", "1")][-1] == f"{(pairs / plan.MEASURED_PAIRS_PER_S['smoke'] + 600) / 60:.1f}"
    assert "--set values (part of the study's name): data.repeated_sampling=2" in out
    assert "…" not in out and not (tmp_path / "state").exists()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_status_gives_a_running_cell_its_minutes_so_far_and_an_eta(tmp_path, capsys):
    import optuna
    from sqlalchemy import create_engine, text

    from study.orchestrate.status import print_status
    from study.orchestrate.storage import open_storage
    from study.studies import parse_study

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = parse_study("tiny", __import__("tomllib").loads(TINY_STUDY))
    study = optuna.create_study(study_name="tiny [smoke]", storage=open_storage(url))
    study.enqueue_trial({}, user_attrs={"role": "trial", "cell_key": '{"model.mask_ratio": 0.5}', "cell": "0.5",
                                        "is_default": False, "seed": 0})
    trial = study.ask()  # a worker elsewhere runs it, 3 minutes in, 40% trained, 5 minutes left 60 s ago
    for k, v in {"host": "elsewhere", "pid": 7, "run_dir": "/x",
                 "eta": {"at": time.time() - 60, "trained": 0.4, "left_s": 360}}.items():
        trial.set_user_attr(k, v)
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE trials SET datetime_start = datetime(datetime_start, '-3 minutes')"))
    rows = print_status(spec, "tiny [smoke]", open_storage(url))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("│ 0.5 "))
    cells = [c.strip() for c in line.split("│")[1:-1]]
    assert cells[2:] == ["running", "", "3.0", "0", "40% trained; ETA 5.0 min"]
    assert ("0.5", 0, "running") in rows


def test_the_workers_hooks_write_the_eta_from_the_training_rate(monkeypatch):
    from study.orchestrate import worker

    class FakeTrial:
        user_attrs: dict = {}

        def set_user_attr(self, k, v):
            self.user_attrs[k] = v

    class FakeRun:
        def log_metrics(self, metrics, step):
            pass

    now = [1000.0]
    monkeypatch.setattr(worker.time, "time", lambda: now[0])
    hooks = worker.Hooks(FakeRun(), FakeTrial(), False, epochs=10.0, eval_s=30.0, progress={})
    hooks.log_metrics({"train.epoch": 2.0}, 5)  # resumed at epoch 2
    now[0] += 40
    hooks.log_metrics({"train.epoch": 4.0}, 10)  # 2 epochs in 40 s: 6 left = 120 s, then 30 s of evaluation
    assert hooks.trial.user_attrs["eta"] == {"at": 1040.0, "trained": 0.4, "left_s": 150}


def test_the_training_progress_line_names_the_trial_and_gives_an_eta(capsys, monkeypatch):
    from study.train import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = progress.TrainProgress(100, start=20, label="[trial 3] 0.75 s1", rich=False, plain_every_s=30)
    bar.set_rate(12.5)
    now[0] = 40.0
    bar.update(40, epoch=1.5, loss=0.25, lr=1e-3)  # 20 steps in 40 s: 60 left = 2 min
    now[0] = 50.0
    bar.update(45, epoch=1.6, loss=0.2, lr=1e-3)  # within 30 s of the last line: nothing
    assert capsys.readouterr().out.splitlines() == [
        "[trial 3] 0.75 s1: step 40/100  epoch 1.50  loss 0.2500  lr 1.00e-03  12.5 pairs/s  ETA 2.0 min"]
