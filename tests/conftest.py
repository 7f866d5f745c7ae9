"""Test-wide isolation: no test writes into the checkout's .study/, MLflow sends nothing anywhere."""

from __future__ import annotations

import os

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # pytest -n 2 runs two workers on two cores


@pytest.fixture(scope="session", autouse=True)
def shared_state_dir(tmp_path_factory):
    """One state folder for the whole run, shared by the xdist workers (its generated data sets are made once,
    under a file lock); tests that need a clean state set STUDY_STATE_DIR themselves."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "shared-state"
    shared.mkdir(exist_ok=True)
    old = os.environ.get("STUDY_STATE_DIR")
    os.environ["STUDY_STATE_DIR"] = str(shared)
    yield shared
    if old is None:
        os.environ.pop("STUDY_STATE_DIR", None)
    else:
        os.environ["STUDY_STATE_DIR"] = old
