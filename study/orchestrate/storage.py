"""Optuna storage: which one, how to open it safely from several processes and machines, and the study-wide lock.

Local default: SQLite through RDBStorage, the same engine as the PostgreSQL scale-out, so heartbeats and
`fail_stale_trials` work everywhere. Two fixes for SQLite under several processes:
- a 60 s busy timeout (the default 5 s gives "database is locked" with 4 workers);
- every transaction starts with BEGIN IMMEDIATE. Optuna pops a WAITING trial with SELECT ... FOR UPDATE, which
  SQLite ignores; pysqlite also runs the SELECT outside any transaction, so two workers could both read WAITING and
  both take the trial. With BEGIN IMMEDIATE the read and the write happen under one write lock (SQLAlchemy's recipe).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from pathlib import Path
from typing import Iterator

import warnings

import optuna
from optuna.storages import RDBStorage
from sqlalchemy import event, text

from study.errors import UserError

HEARTBEAT_S = 10        # a worker records a heartbeat this often while it runs a trial
GRACE_S = 60            # a RUNNING trial without a heartbeat for this long is stale (its worker died)
SCHEMES = ("sqlite", "postgresql", "mysql")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9


def study_name(study: str, budget: str) -> str:
    return f"{study} [{budget}]"


def default_storage_url(state: Path) -> str:
    return f"sqlite:///{state / 'optuna.db'}"


def check_storage_url(url: str) -> None:
    """Before anything is opened: a URL Optuna's RDB storage can take."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES or "://" not in url:
        raise UserError(f"--storage {url!r}: use sqlite:///path/optuna.db or postgresql://user@host/db "
                        "(an Optuna RDB storage URL)")


def _mark_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Heartbeat-stale trials are interrupted, not failed: the next reconcile enqueues them again to resume."""
    study._storage.set_trial_user_attr(trial._trial_id, "interrupted", "heartbeat lost")


def open_storage(url: str) -> RDBStorage:
    kwargs: dict = {"pool_pre_ping": True}
    sqlite = url.startswith("sqlite")
    if sqlite:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                         heartbeat_stale_trial_callback=_mark_interrupted)
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine) -> None:
    @event.listens_for(engine, "connect")
    def _no_pysqlite_transactions(dbapi_connection, _record):  # let SQLAlchemy emit BEGIN itself
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections made before the listeners existed


@contextlib.contextmanager
def study_lock(storage: RDBStorage, name: str, state: Path) -> Iterator[None]:
    """One process at a time reconciles the queue of a study (enqueue, retry, resume), across machines on PostgreSQL.

    PostgreSQL: a session advisory lock. SQLite is one machine's file: an flock beside it."""
    url = str(storage.engine.url)
    if url.startswith("postgresql"):
        key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if url.startswith("mysql"):
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT GET_LOCK(:k, 600)"), {"k": name[:64]})
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": name[:64]})
        return
    lock_dir = state / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{hashlib.sha1(name.encode()).hexdigest()[:10]}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class RunFolderLock:
    """Held by the worker running a cell (flock on <run_dir>/.lock, with host and pid inside).

    The kernel drops it when the process dies (kill -9 included), so on this machine a RUNNING trial whose lock is
    free is known dead at once, without waiting for the heartbeat's grace period."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self._file = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
        f.flush()
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def held_elsewhere(self) -> bool:
        """True when another live process holds the lock (checked by taking it for an instant)."""
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True
