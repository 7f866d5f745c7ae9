"""Optuna storage: which one, how to open it safely from several processes and machines; the locks Optuna has not.

Local default: SQLite through RDBStorage, the same engine as the PostgreSQL scale-out, so Optuna's heartbeats and
`fail_stale_trials` work everywhere. Two fixes for SQLite under several processes:
- a 60 s busy timeout (the default 5 s gives "database is locked" with 4 workers);
- every transaction starts with BEGIN IMMEDIATE. Optuna takes a WAITING trial with SELECT ... FOR UPDATE, which
  SQLite ignores; pysqlite also runs the SELECT outside any transaction, so two workers could both read WAITING and
  both take the trial. With BEGIN IMMEDIATE the read and the write happen under one write lock (SQLAlchemy's recipe).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from pathlib import Path
from typing import Callable, Iterator

from study.atomic import atomic_path
from study.errors import UserError

HEARTBEAT_S = 10        # Optuna records a running trial's heartbeat this often (its own thread, in study.optimize)
GRACE_S = 60            # a RUNNING trial without a heartbeat or a word from its worker for this long is dead
SCHEMES = ("sqlite", "postgresql")  # Optuna RDB storages with a driver installed (sqlite3, psycopg2)


def default_storage_url(state: Path) -> str:
    return f"sqlite:///{state / 'optuna.db'}"


def check_storage_url(url: str) -> None:
    """Before anything is opened: a URL Optuna's RDB storage can take."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES or "://" not in url:
        raise UserError(f"--storage {url!r}: use sqlite:///path/optuna.db or postgresql://user@host/db "
                        "(an Optuna RDB storage URL)")


def create_sqlite(url: str, create: Callable[[str], object]) -> None:
    """A local SQLite store that does not exist yet is made under a temporary name, then renamed into place: a kill
    during its creation (MLflow runs dozens of migrations, 7 s measured here) leaves a store that never opens again
    ("duplicate column name")."""
    path = Path(url.removeprefix("sqlite:///"))
    if url.startswith("sqlite:///") and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            create(f"sqlite:///{tmp}")


def open_storage(url: str):
    import warnings

    import optuna
    from optuna.storages import RDBStorage

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
    sqlite = url.startswith("sqlite")
    kwargs: dict = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    if sqlite:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # no heartbeat_stale_trial_callback: a trial Optuna fails for a stale heartbeat is a FAIL without a `failure`
    # attr, i.e. interrupted, and `queue.reconcile` enqueues it again under the study lock (exactly once)
    storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    if sqlite:
        _serialize_sqlite(storage.engine)
    return storage


def _serialize_sqlite(engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_pysqlite_transactions(dbapi_connection, _record):  # let SQLAlchemy emit BEGIN itself
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections made before the listeners existed


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """flock on `path` -> whether it was taken (always True when waiting). The kernel drops it when the process
    dies, kill -9 included: on this machine a free lock is proof that its holder is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def held_elsewhere(path: Path) -> bool:
    """True when a live process holds the lock on `path` (checked by taking it for an instant)."""
    if not path.exists():
        return False
    with file_lock(path, wait=False) as taken:
        return not taken


def lock_path(state: Path, name: str, kind: str) -> Path:
    return state / "locks" / f"{hashlib.sha1(name.encode()).hexdigest()[:10]}.{kind}"


def no_live_worker(storage, state: Path, name: str) -> bool:
    """SQLite (one machine's file: every worker is here) and no worker of study `name` holds its worker lock."""
    return str(storage.engine.url).startswith("sqlite") and not held_elsewhere(lock_path(state, name, "workers"))


@contextlib.contextmanager
def study_lock(storage, name: str, state: Path) -> Iterator[None]:
    """One process at a time changes the queue of a study (enqueue, resume, retry, take), across machines on
    PostgreSQL: Optuna has no such lock (its `enqueue_trial(skip_if_exists=True)` reads, then writes).

    PostgreSQL: a session advisory lock. SQLite is one machine's file: an flock in the state folder."""
    if not str(storage.engine.url).startswith("postgresql"):
        with file_lock(lock_path(state, name, "lock")):
            yield
        return
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
    with storage.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
