"""Test-wide isolation: no test writes into the checkout's .study/, MLflow sends nothing anywhere."""

from __future__ import annotations

import os
import uuid

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


@pytest.fixture
def postgres_url():
    """A fresh database on the local PostgreSQL server (dropped afterwards). Without a server the test is skipped on a
    developer machine; under CI=true (.ci/run starts the server) a missing server is a failure."""
    import psycopg2

    name = f"study_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(dbname="postgres")
    except psycopg2.OperationalError as e:
        reason = f"no PostgreSQL server on the local socket ({str(e).strip().splitlines()[0]})"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; CI=true needs one (.ci/run starts it)")
        pytest.skip(f"{reason}; .ci/run starts one")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg2:///{name}"
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
