"""The noise benchmark's arithmetic on tables whose answer is known."""

import math

import numpy as np
import pytest

from study.bench.noise import seeds_to_resolve, variance_components


def test_additive_table_splits_exactly_into_seed_and_set_effects():
    seed_effect = np.array([-1.0, 0.5, 2.0, -1.5])
    set_effect = np.array([3.0, -2.0, 1.0])
    table = 40 + seed_effect[:, None] + set_effect[None, :]     # no residual at all
    c = variance_components(table)
    assert c["mean"] == pytest.approx(40 + seed_effect.mean() + set_effect.mean())
    assert c["residual"] == pytest.approx(0, abs=1e-12)
    assert c["seed"] == pytest.approx(seed_effect.std(ddof=1))
    assert c["set"] == pytest.approx(set_effect.std(ddof=1))
    assert c["trial"] == pytest.approx(seed_effect.std(ddof=1))   # what a study sees on one set


def test_pure_residual_gives_no_seed_or_set_spread_in_expectation():
    rng = np.random.default_rng(0)
    c = variance_components(rng.normal(0, 1.0, (400, 40)))
    assert c["residual"] == pytest.approx(1.0, abs=0.02)
    assert c["seed"] < 0.1 and c["set"] < 0.1


def test_seeds_to_resolve_follows_welch_half_width():
    # std 1, delta 2: n=3 gives t(0.975, 4) * sqrt(2/3) = 2.27 > 2; n=4 gives t(0.975, 6) * sqrt(1/2) = 1.73 < 2
    assert seeds_to_resolve(1.0, 2.0) == 4
    assert seeds_to_resolve(0.5, 2.0) == 3
    assert seeds_to_resolve(10.0, 0.1) is None
    assert seeds_to_resolve(float("nan"), 2.0) == 2
    assert math.isnan(variance_components(np.ones((3, 1)))["seed"])


def test_workers_side_by_side_share_the_cores(monkeypatch):
    from study.orchestrate.worker import threads_per_worker

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [threads_per_worker(n) for n in (1, 2, 4)] == [0, 1, 1]  # one process: torch's default
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert [threads_per_worker(n) for n in (2, 4)] == [8, 4]
