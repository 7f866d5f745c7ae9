"""Exactly-once enqueueing, forced by hand (no workers, no threads, so no luck involved): a second `study run` that
reconciles the queue before any worker took a trial enqueues nothing. (The take itself is Optuna's, on the storage
opened by study.orchestrate.storage: tests/test_orchestrate_take.py races it.)"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from study.orchestrate.queue import planned_slots, reconcile
from study.orchestrate.storage import open_storage
from study.studies import load_study


def test_a_second_reconcile_before_any_worker_enqueues_nothing(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="q", storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    spec = load_study("mask_ratio")
    n = len(planned_slots(spec, 2))  # random init + every (cell, seed)
    assert reconcile(study, spec, 2, retry_failed=False) == {"new": n, "resumed": 0, "retried": 0}
    assert reconcile(study, spec, 2, retry_failed=False) == {"new": 0, "resumed": 0, "retried": 0}
    trials = study.get_trials()
    assert len(trials) == n and {t.state for t in trials} == {TrialState.WAITING}
    assert len({(t.user_attrs["cell_key"], t.user_attrs["seed"]) for t in trials}) == n
