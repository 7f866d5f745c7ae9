"""The failure paths of a long study, with the fake trial: a kill between the take and its bookkeeping, a worker of
another machine that stopped beating, two `study run`s at once on a fresh state folder, what a kill -9 loses of the
metrics, and 10 kill -9 at random moments followed by one `study run` that finishes everything exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.orchestrate_helpers import REPO, calls, env_for, make_experiments, run_fake

CELLS = {(m, s) for m in (0.5, 0.75, 0.9) for s in (0, 1)}
EVAL_S = 0.6  # the fake trial's evaluation in the fault-injection test


def _optuna(tmp: Path):
    import optuna

    return optuna.load_study(study_name="tiny [smoke]", storage=f"sqlite:///{tmp / 'state' / 'optuna.db'}")


def _mlflow_runs(tmp: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'state' / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("tiny [smoke]").experiment_id])


def check_every_cell_done_exactly_once(tmp: Path, seeds: int = 2) -> None:
    """Each (cell, seed) and the baseline: one COMPLETE Optuna trial and one FINISHED MLflow run; the parent
    FINISHED; nothing RUNNING or WAITING in either store."""
    planned = Counter({("baseline", s): 1 for s in range(seeds)} | {(str(m), s): 1 for m in (0.5, 0.75, 0.9)
                                                                     for s in range(seeds)})
    trials = _optuna(tmp).trials
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert Counter((t.user_attrs["cell"] if t.user_attrs["role"] == "trial" else "baseline", t.user_attrs["seed"])
                   for t in trials if t.state.name == "COMPLETE") == planned
    runs = _mlflow_runs(tmp)
    assert [r.info.status for r in runs if r.data.tags["study.role"] == "parent"] == ["FINISHED"]
    children = [r for r in runs if r.data.tags["study.role"] != "parent"]
    assert not [r.info.status for r in children if r.info.status != "FINISHED"]
    assert Counter((r.data.tags["study.cell"] if r.data.tags["study.role"] == "trial" else "baseline",
                    int(r.data.tags["study.seed"])) for r in children) == planned


@pytest.mark.slow
@pytest.mark.parametrize("where", ["after-take", "after-mlflow-run"])
def test_a_kill_between_the_take_and_its_bookkeeping_is_resumed_by_the_next_run(tmp_path, where):
    """after-take: the trial is RUNNING with no word of its worker; after-mlflow-run: its MLflow run exists but
    neither the trial nor the run folder knows its id (the next run must reuse it, not leave it RUNNING)."""
    make_experiments(tmp_path)
    r = run_fake(tmp_path, "tiny", STUDY_TEST_KILL_AT=where)
    assert r.returncode == -signal.SIGKILL, r.stderr
    taken = [t for t in _optuna(tmp_path).trials if t.state.name == "RUNNING"]
    assert len(taken) == 1 and ({"host", "pid", "run_dir"} & set(taken[0].user_attrs)) == (
        set() if where == "after-take" else {"host", "pid", "run_dir"})
    r = run_fake(tmp_path, "tiny")
    assert r.returncode == 0, r.stderr
    assert "0 new, 1 to resume, 0 to retry" in r.stdout, r.stdout  # at once: no worker of the study is alive
    assert "waiting for runs" not in r.stdout  # not after the 60 s grace period
    assert Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path)) == Counter(CELLS)
    check_every_cell_done_exactly_once(tmp_path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_whose_heartbeat_went_stale_on_another_machine_is_resumed_without_a_crash(tmp_path):
    from sqlalchemy import create_engine, text

    from study.orchestrate.storage import open_storage

    make_experiments(tmp_path)
    assert run_fake(tmp_path, "tiny", "--seeds", "1").returncode == 0  # creates the stores; 4 runs done
    import optuna

    study = optuna.load_study(study_name="tiny [smoke]", storage=open_storage(f"sqlite:///{tmp_path / 'state' / 'optuna.db'}"))
    study.enqueue_trial({}, user_attrs={"role": "trial", "cell_key": '{"model.mask_ratio": 0.5}', "cell": "0.5",
                                        "is_default": False, "seed": 1})
    trial = study.ask()  # a worker on machine "elsewhere" takes it, beats once, and dies
    for k, v in {"host": "elsewhere", "pid": 1, "run_dir": str(tmp_path / "elsewhere")}.items():
        trial.set_user_attr(k, v)
    storage = open_storage(f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("tiny [smoke]"), trial.number))
    engine = create_engine(f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    with engine.begin() as conn:  # its last beat was an hour ago
        conn.execute(text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')"))
    r = run_fake(tmp_path, "tiny", "--seeds", "2")
    assert r.returncode == 0, r.stderr  # was: UpdateFinishedTrialError from the stale-trial callback
    assert "3 new, 1 to resume" in r.stdout, r.stdout  # seed 1: 0.75, 0.9 and random init
    assert Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path)) == Counter(CELLS)
    check_every_cell_done_exactly_once(tmp_path)


@pytest.mark.slow
def test_two_study_runs_at_once_on_a_fresh_state_folder_both_finish_and_run_each_cell_once(tmp_path):
    make_experiments(tmp_path)
    cmd = [sys.executable, "-m", "tests.orchestrate_helpers", "tiny"]
    env = env_for(tmp_path, FAKE_STEPS="3", FAKE_STEP_S="0.2")
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert not any("Traceback" in err for _, err in outs)
    assert all("8/8 done" in out for out, _ in outs)
    assert Counter((c["mask_ratio"], c["seed"]) for c in calls(tmp_path)) == Counter(CELLS)
    check_every_cell_done_exactly_once(tmp_path)


def test_a_kill_while_a_store_is_created_leaves_no_half_made_store(tmp_path):
    """MLflow's store takes dozens of migrations (7 s here); a kill in the middle used to leave a database that never
    opened again ("duplicate column name"). Now the store appears whole or not at all."""
    db = tmp_path / "state" / "mlflow.db"
    dies_halfway = ("import os, signal, sqlite3, sys; from study.orchestrate.storage import create_sqlite\n"
                    "def half(url):\n"
                    "    sqlite3.connect(url.removeprefix('sqlite:///')).execute('CREATE TABLE experiments (x)')\n"
                    "    os.kill(os.getpid(), signal.SIGKILL)\n"
                    f"create_sqlite('sqlite:///{db}', half)")
    r = subprocess.run([sys.executable, "-c", dies_halfway], cwd=REPO, env=env_for(tmp_path), timeout=60)
    assert r.returncode == -signal.SIGKILL and not db.exists()
    from study import tracking
    from study.orchestrate.storage import create_sqlite

    create_sqlite(f"sqlite:///{db}", tracking.studies_with_runs)
    assert db.exists() and tracking.studies_with_runs(f"sqlite:///{db}") == []


@pytest.mark.slow
def test_a_kill_loses_no_more_than_the_last_few_seconds_of_metrics(tmp_path):
    make_experiments(tmp_path, {"one": "title = \"one\"\nquestion = \"q\"\n[axes]\n\"model.mask_ratio\" = [0.9]\n"})
    proc = subprocess.Popen([sys.executable, "-m", "tests.orchestrate_helpers", "one"], cwd=REPO,
                            env=env_for(tmp_path, FAKE_STEPS="200", FAKE_STEP_S="0.1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "state" / "phases.log"
    deadline, first = time.time() + 200, None
    while time.time() < deadline:  # 8 s into training (the old 10 s buffer had sent nothing yet)
        lines = log.read_text().splitlines() if log.exists() else []
        first = float(lines[0].split()[2]) if lines else None
        if first is not None and time.time() > first + 8:
            break
        time.sleep(0.05)
    killed_at = time.time()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step_times = [float(line.split()[2]) for line in log.read_text().splitlines()]  # step i ended at step_times[i-1]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    run = next(r for r in client.search_runs([client.get_experiment_by_name("one [smoke]").experiment_id])
               if r.data.tags["study.role"] == "trial")
    logged = max((m.step for m in client.get_metric_history(run.info.run_id, "train.loss")), default=0)
    assert logged >= 1, "nothing of 8 s of training reached MLflow"
    lost_s = killed_at - step_times[logged - 1]
    assert lost_s <= 5.0, f"the kill lost the metrics of the last {lost_s:.1f} s"


def _kill_at(rng: random.Random, phase: str, log: Path, seen: int, proc: subprocess.Popen) -> str:
    """Wait for a random moment of `phase` in this launch; -> the phase the kill really hit."""
    if phase == "start-up":  # imports, store creation, the reconcile under the study lock
        time.sleep(rng.uniform(0.0, 2.5))
    else:
        want, deadline = rng.randint(1, 3) if phase == "train" else 1, time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            new = log.read_text().splitlines()[seen:] if log.exists() else []
            if sum(line.startswith(phase) for line in new) >= want:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
    now, new = time.time(), [line.split() for line in (log.read_text().splitlines()[seen:] if log.exists() else [])]
    if any(phase == "eval" and now - float(t) < EVAL_S for phase, _, t in new):  # a worker is inside an evaluation
        return "eval"
    return "train" if new else "start-up"


@pytest.mark.slow
def test_ten_kill9_at_random_moments_then_one_run_finishes_every_cell_exactly_once(tmp_path):
    """A 2-worker study killed (the whole process group) at seeded random moments of start-up, training and
    evaluation; then one `study run` to completion."""
    make_experiments(tmp_path)
    rng, log = random.Random(15), tmp_path / "state" / "phases.log"
    env = env_for(tmp_path, FAKE_STEPS="6", FAKE_STEP_S="0.15", FAKE_EVAL_S=str(EVAL_S))
    hit = []
    for phase in ["start-up", "train", "eval"] * 3 + [rng.choice(["start-up", "train", "eval"])]:
        seen = len(log.read_text().splitlines()) if log.exists() else 0
        proc = subprocess.Popen([sys.executable, "-m", "tests.orchestrate_helpers", "tiny", "--workers", "2",
                                 "--seeds", "3"], cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hit.append(_kill_at(rng, phase, log, seen, proc))
        assert proc.poll() is None, f"the study ended before kill {len(hit)}: size it up"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert set(hit) == {"start-up", "train", "eval"}, hit
    r = subprocess.run([sys.executable, "-m", "tests.orchestrate_helpers", "tiny", "--workers", "2", "--seeds", "3"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "12/12 done" in r.stdout, r.stdout  # 3 cells and random init, 3 seeds
    check_every_cell_done_exactly_once(tmp_path, seeds=3)
