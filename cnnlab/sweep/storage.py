"""The study's storage: a SQLite file in the sweep folder by default, or any database URL Optuna takes
(`postgresql://user@host/db` when workers on several machines share one sweep).

SQLite made safe for parallel workers: Optuna's claim of a waiting trial reads its state and then writes it
(`SELECT ... FOR UPDATE`, which SQLite ignores). Under pysqlite's default, the read happens outside the write
transaction, so two processes can both read WAITING and both claim the trial. Here every transaction on a
sweep's SQLite file starts with `BEGIN IMMEDIATE` (SQLite's write lock is taken before the first read), so
transactions run one at a time, and a busy timeout makes a worker wait for the lock instead of failing with
"database is locked". tests/test_sweep_claims.py proves it with several processes claiming at once.

A database that stops answering (PostgreSQL restarting, a dropped connection) is retried for RETRY_S seconds:
pooled connections are checked before use (a dead one is replaced), and every storage call is repeated until it
succeeds or the time is up; then one CnnlabError says what happened, that finished runs are safe, and how to go on.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
import weakref

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from cnnlab.atomic import read_only
from cnnlab.errors import CnnlabError

BUSY_TIMEOUT_S = 300  # how long a SQLite writer waits for the lock held by another worker
RETRY_S = 20.0  # how long a storage call is retried while the database does not answer (a restart takes seconds)
_IMMEDIATE: "weakref.WeakSet[Engine]" = weakref.WeakSet()  # SQLite engines whose transactions begin IMMEDIATE


@event.listens_for(Engine, "begin")
def _begin_immediate(conn) -> None:
    if conn.engine in _IMMEDIATE:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and files."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _sqlite_kwargs(url: str) -> dict:
    """Engine settings for a SQLite URL: no implicit BEGIN from pysqlite (we begin), and a long busy timeout."""
    path = make_url(url).database
    return {
        "creator": lambda: sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    }


def storage_lost(url: str, error: BaseException) -> CnnlabError:
    reason = (str(getattr(error, "orig", None) or error.__cause__ or error).strip().splitlines() or [""])[0][:300]
    return CnnlabError(
        f"the sweep's storage {redact(url)} stopped answering for {RETRY_S:g} s ({reason}); nothing is "
        "lost: every finished run is in its folder and the storage keeps what it had; once the "
        "database answers again, run the same `cnnlab sweep` command to continue (an unfinished "
        "run resumes from its last epoch)"
    )


def _retried(method):
    """`method` of the storage, repeated while the database does not answer, for up to RETRY_S seconds."""
    import optuna

    lost = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        deadline, pause = time.monotonic() + RETRY_S, 0.2
        while True:
            try:
                return method(self, *args, **kwargs)
            except lost as e:
                if read_only(e):  # no wait makes a read-only file writable: the command line says so at once
                    raise
                if time.monotonic() + pause > deadline:
                    raise storage_lost(self.url, e) from e
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    return call


@functools.lru_cache(maxsize=None)
def _retrying_class():
    """RDBStorage with every public storage call retried (see the module's docstring)."""
    import optuna

    base = optuna.storages.RDBStorage
    methods = {
        name: _retried(getattr(base, name))
        for name in dir(optuna.storages.BaseStorage)
        if not name.startswith("_") and callable(getattr(base, name))
    }
    return type("RetryingRDBStorage", (base,), methods)


def open_storage(url: str, attempts: int = 8):
    """An Optuna RDBStorage for `url`. First use of a fresh database creates its tables; workers that start
    together may race at that, so a failure is retried a few times before it is reported."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = _sqlite_kwargs(url) if url.startswith("sqlite") else {"pool_pre_ping": True}  # a restart kills pooled ones
    for attempt in range(attempts):
        try:
            storage = _retrying_class()(url, engine_kwargs=kwargs)
            if "creator" in kwargs:  # SQLite, and only now: setting up the tables nests two connections,
                _IMMEDIATE.add(storage.engine)  # which BEGIN IMMEDIATE would deadlock
            return storage
        except ImportError as e:
            raise CnnlabError(
                f"storage {redact(url)}: the database driver is not installed ({e}); for PostgreSQL "
                f"install cnnlab's postgres extra: pip install 'cnnlab[postgres]'"
            ) from None
        except (sqlalchemy.exc.ArgumentError, ValueError) as e:
            raise CnnlabError(
                f"storage {redact(url)} is not a database URL Optuna can use ({e}); "
                f"e.g. sqlite:///study.db or postgresql://user@host:5432/db"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
            if attempt == attempts - 1:
                reason = getattr(e, "orig", None) or e.__cause__ or e
                raise CnnlabError(f"cannot use storage {redact(url)}: {str(reason).strip()}") from None
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
