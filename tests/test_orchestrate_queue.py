"""The queue's two guarantees, forced by hand (no workers, no threads, so no luck involved): a trial that another
worker took after this one listed the queue is not taken again, and a second `study run` that reconciles before any
worker started enqueues nothing."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from study.orchestrate.queue import planned_slots, pop_waiting, reconcile
from study.orchestrate.storage import open_storage
from study.studies import load_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # fail_stale_trials


@pytest.fixture
def queue(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="q", storage=storage)
    return study, storage, storage.get_study_id_from_name("q")


def test_a_trial_taken_after_the_listing_is_not_taken_again(queue, monkeypatch):
    """The race of two workers, in its worst order: B lists the WAITING trials, A takes the only one, B takes from its
    stale list. The take must be the storage's atomic WAITING -> RUNNING transition, so B gets nothing."""
    study, storage, study_id = queue
    study.enqueue_trial({}, user_attrs={"slot": 0})
    listed_by_b = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    assert pop_waiting(study, storage, study_id).number == 0  # A
    monkeypatch.setattr(storage, "get_all_trials", lambda *args, **kwargs: listed_by_b)
    assert pop_waiting(study, storage, study_id) is None  # B
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]


def test_a_second_reconcile_before_any_worker_enqueues_nothing(queue):
    study, storage, _ = queue
    spec = load_study("mask_ratio")
    n = len(planned_slots(spec, 2))  # random init + every (cell, seed)
    assert reconcile(study, storage, spec, 2, retry_failed=False) == {"new": n, "resumed": 0, "retried": 0}
    assert reconcile(study, storage, spec, 2, retry_failed=False) == {"new": 0, "resumed": 0, "retried": 0}
    trials = study.get_trials()
    assert len(trials) == n and {t.state for t in trials} == {TrialState.WAITING}
    assert len({(t.user_attrs["cell_key"], t.user_attrs["seed"]) for t in trials}) == n
