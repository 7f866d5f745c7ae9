"""The atomic take, forced: takers released at once on a barrier, each taking a queued trial the way a worker does
(`study.ask()` on the project's storage), on SQLite and on PostgreSQL. Each WAITING trial must go to exactly one
taker; a plain read-then-write take gives one trial to two takers (checked by planting it)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

TAKERS, ROUNDS = 6, 5


def _race(url: str) -> list[Counter]:
    """ROUNDS rounds: queue TAKERS trials, release TAKERS threads at once (each with its own storage, as separate
    processes have); -> per round, how often each trial number was taken."""
    import warnings

    import optuna

    from study.orchestrate.storage import open_storage

    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="race", storage=open_storage(url))
    studies = [optuna.load_study(study_name="race", storage=open_storage(url)) for _ in range(TAKERS)]
    out = []
    for _ in range(ROUNDS):
        for i in range(TAKERS):
            studies[0].enqueue_trial({}, user_attrs={"slot": i})
        barrier, taken = threading.Barrier(TAKERS), []

        def take(study):
            barrier.wait()
            taken.append(study.ask().number)

        threads = [threading.Thread(target=take, args=(s,)) for s in studies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.append(Counter(taken))
    return out


def _check(rounds: list[Counter], url: str) -> None:
    import optuna

    trials = optuna.load_study(study_name="race", storage=url).trials
    assert all(set(c.values()) == {1} for c in rounds), f"a trial was taken twice: {rounds}"
    assert sum(sum(c.values()) for c in rounds) == len(trials) == TAKERS * ROUNDS  # nothing left, nothing made up
    assert {t.state.name for t in trials} == {"RUNNING"}


def test_each_queued_trial_is_taken_once_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _check(_race(url), url)


@pytest.mark.postgres
def test_each_queued_trial_is_taken_once_on_postgresql(postgres_url):
    _check(_race(postgres_url), postgres_url)


def test_without_a_postgresql_server_the_test_skips_but_fails_under_ci(tmp_path):
    import os
    import subprocess
    import sys

    from tests.orchestrate_helpers import REPO

    test = "tests/test_orchestrate_take.py::test_each_queued_trial_is_taken_once_on_postgresql"
    for ci, code, says in (("", 0, "1 skipped"), ("true", 1, "CI=true needs one")):
        env = {**os.environ, "PGHOST": str(tmp_path / "no-server"), "CI": ci}  # libpq finds no socket there
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", test], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == code and says in r.stdout, r.stdout[-2000:]
