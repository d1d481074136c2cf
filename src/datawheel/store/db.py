"""Engines and transactions: how the store talks to SQLite or PostgreSQL.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE``: it takes
the write lock before its first read, so read-then-write transactions (create
a user if missing, append to the audit chain) can neither race nor fail with
a stale snapshot; other writers wait ``busy_timeout``. Reads stay concurrent
(WAL). ``synchronous=FULL`` makes a committed write survive power loss.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: writers fall back on SQLite's busy handler
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from datawheel.artifacts import private_file
from datawheel.errors import ConfigError


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A UUID version 7 (RFC 9562) as 32 hex digits: the creation time in milliseconds, then 74 random bits.

    As unguessable as a random UUID for anyone who does not already know when a row was made, and ordered by
    time, so a group commit's new rows land together at the end of each index on their id instead of on one
    random page each: a commit of 32 records wrote 31 % fewer bytes to SQLite's log, and took less CPU, than
    with random ids (``benchmarks/record_ids.py``; issue 12). The time is also in each row's ``created_at``.
    """
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, of which 74 are used
    value = ((time.time_ns() // 1_000_000) & _MS_MASK) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 \
        | (rand & _RAND_B_MASK)
    return f"{value:032x}"


_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1


def aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything datawheel stores is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below issues BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are overwritten, not left in a free page
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Statement journals (a multi-row INSERT's undo copy of the pages it changes: stored rows) and sorts stay in
    # memory rather than in an unlinked file under /var/tmp, outside the workspace and its secure_delete.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # On the driver's connection: through SQLAlchemy's execution layer the BEGIN cost more than a lone insert.
    raw = conn.connection.driver_connection
    if raw.in_transaction:  # type: ignore[union-attr]  # begun on the driver already (a loop's group commit)
        return
    raw.execute("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")  # type: ignore[union-attr]


def make_engine(url: str) -> Engine:
    scheme = url.split(":", 1)[0]
    if not scheme.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"db url: datawheel's store runs on sqlite:// or postgresql:// URLs, not {scheme}://")
    if scheme.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            private_file(Path(database))  # SQLite gives its -wal and -shm files the database file's mode
        # hide_parameters: a failed statement's values (user ids, inputs) must never reach a log.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed when the block ends without an exception."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


class WriterTurn:
    """This database's writer turn, across processes, taken before each write transaction (SQLite files only).

    Several server processes each run a group-commit writer. On SQLite a writer that finds the lock taken
    sleeps in its busy handler (1, 2, 5... up to 100 ms at a time) however soon the lock is released; an
    ``flock`` on a file beside the database wakes the next writer the moment the previous one is done, and
    the writes queued meanwhile join its batch. The kernel releases the lock of a killed process.
    PostgreSQL queues writers itself: nothing to do there.

    The file stays open between turns (:meth:`close` lets it go): opening and closing it per batch were two
    more system calls on which the writer thread gave up the GIL, and under load each time it took the GIL
    back from a busy event loop cost it about a millisecond of timed waits.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = f"{database}.writer-lock" if database and database != ":memory:" and fcntl is not None else None
        self._fd: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def take_now(self) -> bool:
        """The turn if no other process has it, without waiting: whether it was taken (:meth:`release` gives it
        back). An event loop's writes that find it taken try again a moment later, or go to the writer thread,
        rather than stall the loop."""
        if self.path is None:
            return True
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        assert self.path is not None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # owner-only, like the database
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases a lock still held


def insert_ignore(conn: Connection, table: Any, values: dict) -> Any:
    return insert_ignore_stmt(conn, table).values(**values)


def insert_ignore_stmt(conn: Connection, table: Any) -> Any:
    """INSERT that skips rows whose key exists; without values, so one statement can take many rows."""
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert  # make_engine allows no other
    return dialect_insert(table).on_conflict_do_nothing()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
