"""Group commit: concurrent small writes share one transaction, and so one fsync.

A request's write (a record, a feedback) is handed to one writer thread as a
function of a :class:`Batch`. The writer takes everything queued, opens one
write transaction (``BEGIN IMMEDIATE`` on SQLite), runs each function in turn,
inserts the rows they deferred a few statements per table, commits once, and
only then answers each caller. So:

* a caller is answered only once the commit holding its write is durable:
  synced by SQLite (``synchronous=FULL``) on the writer thread, or by the
  log's sync for an event loop's commits (below), never before;
* a write whose own check fails (a consent requirement, a missing row) raises
  in its own caller alone and leaves nothing behind: rows it deferred are
  dropped, and whatever it wrote directly went through :meth:`Batch.direct`
  (its own SAVEPOINT) and is rolled back; the others in the batch still commit;
* if the transaction itself fails (the read-ahead, the bulk insert, the
  commit, the lock), every caller in the batch gets the error and none of
  their writes is kept;
* a lone write does not wait for company: the writer starts a batch as soon as
  anything is queued. Batches form only while a commit is in flight, which is
  exactly when waiting is free;
* a coroutine's write (:meth:`GroupCommitter.submit_async`) on SQLite is made on
  its event loop's own thread: the writes the loop submits in one turn (those
  of one shared forward pass, under load) are committed together as the turn
  ends, on a connection that commits without SQLite's sync, and are answered
  once a sync of the write-ahead log that started after their commit has
  returned (``store/wal_sync.py``, on a helper thread; batches committed while
  a sync runs share the next). A writer thread's every statement gave up the
  GIL, and taking it back from the busy loop cost futex wake-ups and context
  switches: a seventh of the server's CPU under load (issue 12);
* the loop never waits for a lock: if the writer thread is busy or has writes
  queued, another process has the writer turn, or another connection holds
  SQLite's write lock, the turn's writes are tried again a millisecond later
  with those submitted meanwhile, and after ``lock_wait`` go to the writer
  thread, which waits (and commits with ``synchronous=FULL``), as do all writes
  on PostgreSQL;
* a coroutine's write that is *alone* (its caller says nothing else is in
  flight on its loop) is committed and the log synced at once, on the caller's
  thread, and the future is resolved on return: handing it to another thread
  and waking the loop back cost a lone predict a tenth of its CPU.

Why deferred rows: the common write is one plain INSERT whose checks are
reads. Run one by one, each costs a statement build, a savepoint and its
release; deferred, a batch of them is a few multi-row INSERTs. Likewise the
common read: a write names its user when it is submitted, and the batch reads
what it needs about all of its users in one query (``read_users``), inside the
write transaction and before any write runs, so each write sees exactly what a
read of its own would have shown it then.

The writer is started on first use and exits after a few idle seconds, so an
idle or forgotten store holds no thread and no connection. While it runs, on
SQLite, it keeps its connection from one batch to the next (checking one out
and back in cost a sixth of a lone write's time); on PostgreSQL it checks one
out per batch, so the pool's pre-ping still catches a connection the server
dropped before a batch is lost to it. After a failed batch the connection is
let go either way. The loop's connection is kept and let go the same way, but
never back into the pool: it commits without a sync and waits for no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, MetaData, Result, Table, insert

from datawheel.batching import BatchWorker
from datawheel.store.db import WriterTurn, insert_ignore_stmt
from datawheel.store.raw_sqlite import driver, insert_rows
from datawheel.store.wal_sync import LOOP_CHECKPOINT_PAGES, WalSync, settle

T = TypeVar("T")

MAX_BATCH = 128
IDLE_EXIT_SECONDS = 5.0
#: while another process or connection holds the lock, a loop retries its writes this often, for this long, before
#: the writer thread (which waits for the lock) takes them: another server worker holds it for a fraction of a
#: millisecond, and handing the writes over made that worker's next batch find the lock taken in turn
RETRY_SECONDS = 0.001
LOCK_WAIT_SECONDS = 0.05


class Batch:
    """What one write function sees of the shared transaction.

    Reads go straight to the connection (:meth:`read`) and see what earlier
    batches committed, not the rows this batch deferred: those are in ``memo``;
    ``users`` is what was read at the start of the batch about the users its
    writes named, so it too predates every write of the batch.
    Plain inserts are *deferred* (:meth:`defer`) and made together after every
    function ran; any other write goes through :meth:`direct`, which opens this
    write's SAVEPOINT first. ``memo`` is shared by the batch's writes (a user
    already looked up, a record already deferred); a write adds to it with
    :meth:`remember`, which like :meth:`defer` counts only if the write returns.
    """

    def __init__(self, conn: Connection, users: Mapping[str, Any] | None = None) -> None:
        self.conn = conn
        #: what ``read_users`` read about the users the batch's writes named, before any of them ran
        self.users: Mapping[str, Any] = users or {}
        self.memo: dict[Any, Any] = {}
        self._rows: dict[Table, list[dict]] = {}
        self._ignore: set[Table] = set()
        self._staged_rows: list[tuple[Table, dict, bool]] = []
        self._staged_memo: dict[Any, Any] = {}
        self._savepoint: Any = None

    def read(self, stmt: Executable, params: dict | None = None) -> Result:
        return self.conn.execute(stmt, params)

    def recall(self, key: Any) -> Any:
        """What this write or an earlier successful one in the batch remembered under ``key`` (None: nothing)."""
        return self._staged_memo.get(key, self.memo.get(key))

    def remember(self, key: Any, value: Any) -> None:
        self._staged_memo[key] = value

    def defer(self, table: Table, row: dict, *, ignore_conflict: bool = False) -> None:
        """Insert ``row`` with the batch's other rows for ``table``, after every write ran, if this one returns."""
        self._staged_rows.append((table, row, ignore_conflict))

    def direct(self) -> Connection:
        """The connection, to write now: the first call opens this write's SAVEPOINT, so all it writes through
        here is undone if the write raises (before or after the call)."""
        if self._savepoint is None:
            self._savepoint = self.conn.begin_nested()
        return self.conn

    def _run(self, fn: Callable[[Batch], T]) -> T:
        """Run one write; keep its deferred rows, memo and direct writes only if it returns."""
        self._staged_rows, self._staged_memo, self._savepoint = [], {}, None
        try:
            result = fn(self)
        except BaseException:
            if self._savepoint is not None:
                self._savepoint.rollback()
            raise
        if self._savepoint is not None:
            self._savepoint.commit()
        for table, row, ignore in self._staged_rows:
            self._rows.setdefault(table, []).append(row)
            if ignore:
                self._ignore.add(table)
        self.memo.update(self._staged_memo)
        return result

    def _flush(self) -> None:
        """The deferred rows, table by table (a few multi-row INSERTs each), parents first (feedback needs its
        record)."""
        tables = list(self._rows)
        if len(tables) > 1:
            order = _table_order(tables[0].metadata)
            tables.sort(key=lambda tb: order.get(tb, len(order)))
        for table in tables:
            rows, ignore = self._rows[table], table in self._ignore
            if not insert_rows(self.conn, table, rows, ignore):
                self.conn.execute(_insert(self.conn, table, ignore), rows)
        self._rows.clear()


_ORDERS: dict[tuple[int, int], dict[Table, int]] = {}
_INSERTS: dict[tuple[str, Table, bool], Executable] = {}


def _insert(conn: Connection, table: Table, ignore_conflict: bool) -> Executable:
    """The INSERT (skipping rows whose key exists, with ``ignore_conflict``) for a table's deferred rows, built once
    per dialect: building one cost as much as running it for a row."""
    key = (conn.dialect.name, table, ignore_conflict)
    stmt = _INSERTS.get(key)
    if stmt is None:
        stmt = _INSERTS[key] = insert_ignore_stmt(conn, table) if ignore_conflict else insert(table)
    return stmt


def _table_order(metadata: MetaData) -> dict[Table, int]:
    """Each table's place in dependency order (parents first); sorting the schema per batch cost a tenth of a
    millisecond, so it is done once per schema."""
    key = (id(metadata), len(metadata.tables))
    order = _ORDERS.get(key)
    if order is None:
        order = _ORDERS[key] = {table: n for n, table in enumerate(metadata.sorted_tables)}
    return order


#: a write; the user it names (None: none), whose stored state the batch reads ahead with the others'; and, for a
#: coroutine, the asyncio future it awaits
Job = tuple[Callable[[Batch], Any], str | None, "asyncio.Future[Any] | None"]


class GroupCommitter:
    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH, idle_exit: float = IDLE_EXIT_SECONDS,
                 read_users: Callable[[Connection, list[str]], Mapping[str, Any]] | None = None,
                 lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.engine = engine
        self.lock_wait = lock_wait
        self.read_users = read_users
        self.worker: BatchWorker[Job] = BatchWorker(self._commit, name="datawheel-group-commit", max_batch=max_batch,
                                                    idle_exit=idle_exit, on_exit=self._release)
        self.pid = self.worker.pid
        #: batches committed and writes in them, for tests and telemetry
        self.batches = 0
        self.writes = 0
        #: the writer's connection between batches (SQLite only: see the module's docstring)
        self._conn: Connection | None = None
        self._keep = engine.dialect.name == "sqlite"
        #: held while a batch is written, by the writer thread or by a lone write on its caller's thread
        self._turn = threading.Lock()
        #: this database's turn among processes (its lock file is let go with the kept connection)
        self.writer_turn = WriterTurn(engine)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._wrote_at = 0.0  # the loop's time of its last write (``_idle_later``)
        #: SQLite files: a coroutine's writes are made on its loop's thread, on a connection of their own that
        #: commits without SQLite's sync and never waits for a lock (``_loop_conn``), and made durable by a sync
        #: of the log (``wal``); PostgreSQL and in-memory SQLite keep the writer thread
        self.wal = WalSync() if self.writer_turn.path is not None else None
        self._loop_conn: Connection | None = None
        self._log_path: str | None = None
        #: each loop's writes submitted in its current turn, made together at the turn's end
        self._on_loop: dict[asyncio.AbstractEventLoop, _Pending] = {}

    def submit(self, fn: Callable[[Batch], T], user: str | None = None) -> Future[T]:
        """Queue ``fn`` for the next shared transaction; the future resolves once that has committed.

        ``user``: the user the write is about, read ahead with the batch's others (``Batch.users``).
        A coroutine uses :meth:`submit_async` instead.
        """
        future: Future[T] = self.worker.submit((fn, user, None))
        return future

    def submit_async(self, fn: Callable[[Batch], T], user: str | None = None, *,
                     alone: bool = False) -> asyncio.Future[T]:
        """As :meth:`submit`, for a coroutine: an asyncio future of the running loop, resolved there together with
        the batch's other writes for that loop, one wake-up of the loop per batch rather than one per write.

        ``alone``: nothing else is in flight on this loop, so if the writer is idle the write is made now, on this
        thread, and the future is already resolved on return.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        if alone and not self.worker.queued() and self._write_now(fn, user, waiter, loop):
            return waiter
        if self.wal is None or self.wal.failed is not None:
            self.worker.submit((fn, user, waiter))
            return waiter
        pending = self._on_loop.get(loop)
        if pending is None:
            pending = self._on_loop[loop] = _Pending()
            loop.call_soon(self._flush_on_loop, loop, pending)
        pending.append((fn, user, waiter))
        return waiter

    def _write_now(self, fn: Callable[[Batch], T], user: str | None, waiter: asyncio.Future[T],
                   loop: asyncio.AbstractEventLoop) -> bool:
        """Write ``fn`` as a batch of one, durably, if the writer is idle (nothing queued, no batch running) and the
        database's lock is free; False (nothing done) if not."""
        future: Future[T] = Future()
        if self.wal is not None and self.wal.failed is not None:
            return False
        # without a log to sync (PostgreSQL): the writer thread's transaction, on this thread
        if not self._write_here([((fn, user, None), future)], on_loop=self.wal is not None):
            return False
        # done, and never cancelled (its job names no waiter to cancel it); ``waiter`` is new, so not done either
        error = future.exception()
        if error is None and self.wal is not None:
            try:
                self.wal.sync_now()
            except Exception as exc:  # noqa: BLE001 - committed but not known durable: not reported stored
                error = exc
        if error is None:
            waiter.set_result(future.result())
        else:
            waiter.set_exception(error)
        self._idle_later(loop)
        return True

    def _flush_on_loop(self, loop: asyncio.AbstractEventLoop, pending: _Pending) -> None:
        """The writes this loop submitted in one turn: one transaction on this thread if the writer and the lock
        are free, answered after the log's next sync. While they are not, retried every ``RETRY_SECONDS`` with the
        writes submitted meanwhile, and after ``lock_wait`` handed to the writer thread, which waits."""
        if self._on_loop.get(loop) is pending:
            del self._on_loop[loop]
        assert self.wal is not None
        batch: list[tuple[Job, Future]] = [(job, Future()) for job in pending]
        if self.wal.failed is None and self._write_here(batch, on_loop=True):
            stored: list[tuple[asyncio.Future, Future]] = []
            unstored: list[tuple[asyncio.Future, Future]] = []
            for (_, _, waiter), future in batch:
                if waiter is not None:
                    (stored if _stored(future) else unstored).append((waiter, future))
            settle(unstored)  # refused or failed: nothing to make durable
            if stored:
                self.wal.after_commit(loop, stored)
            self._idle_later(loop)
            return
        now = loop.time()
        if pending.since is None:
            pending.since = now
        if self.wal.failed is None and now - pending.since < self.lock_wait:
            newer = self._on_loop.get(loop)
            if newer is not None:  # writes submitted since: all go with them, at their turn's flush
                newer[:0] = pending
                newer.since = pending.since
            else:
                self._on_loop[loop] = pending
                loop.call_later(RETRY_SECONDS, self._flush_on_loop, loop, pending)
            return
        for job in pending:
            self.worker.submit(job)

    def _write_here(self, batch: list[tuple[Job, Future]], *, on_loop: bool) -> bool:
        """Commit ``batch`` on this thread if the writer is idle (nothing queued, no batch running); ``on_loop``, on
        the loop's connection (without SQLite's sync) and only if no other process or connection holds the
        database's lock. False, having done nothing, if not; on True every future is done."""
        if self.worker.queued() or not self._turn.acquire(blocking=False):
            return False
        try:
            if self.worker.queued():  # queued meanwhile: it goes first, with the worker
                return False
            if not on_loop:
                self._write(batch)
                return True
            if self._loop_conn is None and not self._open_loop_connection():
                return False  # (a failure to connect is the writer thread's to report, as ever)
            return self._write_on_loop(batch)
        finally:
            self._turn.release()

    def _idle_later(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let the kept connections go once writes stop, as the writer thread does when idle. The timer is set
        once and, when it fires, set again for what is left if a write came meanwhile: cancelling and setting it
        on every write cost a lone write more than the check."""
        if self._keep:
            self._wrote_at = loop.time()
            if self._idle_timer is None:
                self._idle_timer = loop.call_later(self.worker.idle_exit, self._release_if_idle, loop)

    def _release_if_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        self._idle_timer = None
        left = self._wrote_at + self.worker.idle_exit - loop.time()
        if left > 0:  # written since the timer was set
            self._idle_timer = loop.call_later(left, self._release_if_idle, loop)
            return
        if (self.wal is not None and not self.wal.idle()) or not self._turn.acquire(blocking=False):
            self._idle_later(loop)  # writes still waiting for a sync, or a batch running: later
            return
        try:
            self._close_loop()
        finally:
            self._turn.release()
        if self.worker.thread is None and not self.worker.queued():  # a running writer lets its own go
            self._release()

    def run(self, fn: Callable[[Batch], T], user: str | None = None) -> T:
        """Run ``fn`` in a write transaction shared with concurrent writes; return once that has committed."""
        return self.submit(fn, user).result()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(write=True)
        return self._conn

    def _release(self) -> None:
        """Let the kept connection go, between batches."""
        with self._turn:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.writer_turn.close()

    def _open_loop_connection(self) -> bool:
        """The loop's connection; False (and the writer thread from now on) if the database keeps no write-ahead
        log, whose sync is what makes the loop's commits durable."""
        assert self.wal is not None
        try:
            conn = self.engine.connect().execution_options(write=True)
        except Exception:  # noqa: BLE001 - see _write_here
            return False
        raw = _driver(conn)
        if raw.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.close()
            self.wal.failed = RuntimeError("the database keeps no write-ahead log")
            return False
        raw.execute("PRAGMA synchronous=NORMAL")  # the log sync (``wal``) makes a commit durable instead
        raw.execute("PRAGMA busy_timeout=0")  # the lock held elsewhere: the writer thread waits, not the loop
        raw.execute(f"PRAGMA wal_autocheckpoint={LOOP_CHECKPOINT_PAGES}")  # the sync thread checkpoints instead
        self._loop_conn = conn
        return True

    def _close_loop(self) -> None:
        """Let the loop's connection go; never back to the pool, where another user would get its settings."""
        conn, self._loop_conn, self._log_path = self._loop_conn, None, None
        if conn is not None:
            conn.invalidate()
            conn.close()
        if self.wal is not None:
            self.wal.close()

    def _log_path_of(self, conn: Connection) -> str:
        """The write-ahead log of ``conn``'s database, as SQLite names it (after resolving links)."""
        if self._log_path is None:
            rows = _driver(conn).execute("PRAGMA database_list").fetchall()
            self._log_path = next(file for _, name, file in rows if name == "main") + "-wal"
        return self._log_path

    def _commit(self, batch: list[tuple[Job, Future]]) -> None:
        with self._turn:
            try:
                self._write(batch)
            finally:
                _wake(batch)

    def _write(self, batch: list[tuple[Job, Future]]) -> None:
        """One transaction for the batch, on the writer's connection; each future gets its write's outcome."""
        try:
            conn = self._connection()
            with self.writer_turn(), conn.begin():
                done = self._run_batch(conn, batch)
        except BaseException as exc:  # the transaction failed: nothing of this batch is kept
            self._close()  # nor the connection, which may be what failed
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not self._keep:
            self._close()
        self._done(done)

    def _write_on_loop(self, batch: list[tuple[Job, Future]]) -> bool:
        """The batch on the loop's connection, its transaction begun and committed on the driver: SQLAlchemy's own
        begin and commit (events, a transaction object, an exit stack) cost a lone predict a tenth of its write.
        SQLAlchemy joins in only if a write reads or writes through it (a consent change's savepoint): it then
        finds the transaction open, and commits it. False, having done nothing, if the writer turn or SQLite's lock
        is held elsewhere; on True every future is done."""
        assert self.wal is not None and self._loop_conn is not None
        conn = self._loop_conn
        raw = _driver(conn)
        if not self.writer_turn.take_now():
            return False
        try:
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                    return False  # another connection holds SQLite's lock: nothing done
                raise
            # in the transaction, so the log exists and is the one this connection writes
            self.wal.open(self._log_path_of(conn))
            done = self._run_batch(conn, batch)
            if conn.in_transaction():
                conn.commit()
            else:
                raw.execute("COMMIT")
        except BaseException as exc:  # the transaction failed: nothing of this batch is kept
            self._close_loop()  # nor the connection, which may be what failed (closing it rolls back)
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return True
        finally:
            self.writer_turn.release()
        self._done(done)
        return True

    def _run_batch(self, conn: Connection, batch: list[tuple[Job, Future]]) -> list[tuple[Future, Any]]:
        """Each write of the batch in the open transaction, then the rows they deferred: the writes that returned,
        with their results (a write that raised has its exception in its future already)."""
        done: list[tuple[Future, Any]] = []
        named = list(dict.fromkeys(user for (_, user, _), _ in batch if user is not None))
        shared = Batch(conn, self.read_users(conn, named) if named and self.read_users else None)
        for (fn, _, waiter), future in batch:
            # its coroutine stopped waiting (a read of one attribute, safe off the loop): a cancel
            if waiter is not None and waiter.cancelled():
                future.cancel()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = shared._run(fn)
            except Exception as exc:  # noqa: BLE001 - handed to its own caller, unchanged
                future.set_exception(exc)
            else:
                done.append((future, result))
        shared._flush()
        return done

    def _done(self, done: list[tuple[Future, Any]]) -> None:
        """The batch committed: its writes' futures get their results."""
        self.batches += 1
        self.writes += len(done)
        for future, result in done:
            future.set_result(result)


def _fail(batch: list[tuple[Job, Future]], exc: BaseException) -> None:
    """The batch's transaction failed: every write not already answered gets the error."""
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _wake(batch: list[tuple[Job, Future]]) -> None:
    """Hand each coroutine's outcome to its loop: one call per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Future]]] = {}
    for (_, _, waiter), future in batch:
        if waiter is not None:
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, future))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # raised when the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, outcomes)


class _Pending(list[Job]):
    """A loop's writes waiting for their transaction, and since when they have found the lock taken."""

    since: float | None = None


def _stored(future: Future) -> bool:
    """The write ran and returned: its rows are in the commit."""
    return future.done() and not future.cancelled() and future.exception() is None


def _driver(conn: Connection) -> sqlite3.Connection:
    raw = driver(conn)
    assert raw is not None, "the loop's commits run on SQLite only"
    return raw
