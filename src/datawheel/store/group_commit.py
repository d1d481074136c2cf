"""Group commit: concurrent small writes share one transaction, and so one fsync.

A request's write (a record, a feedback) is handed to one writer thread as a
function of a :class:`Batch`. The writer takes everything queued, opens one
write transaction (``BEGIN IMMEDIATE`` on SQLite), runs each function in turn,
inserts the rows they deferred a few statements per table, commits once, and
only then answers each caller. So:

* durability is unchanged: a caller is answered after the commit holding its
  write (``synchronous=FULL`` stays), never before;
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
* a coroutine's write (:meth:`GroupCommitter.submit_async`) is answered on its
  event loop, with the batch's other writes from that loop in one call: waking
  the loop once per write cost more than the write's own insert;
* a coroutine's write that is *alone* (its caller says nothing else is in
  flight on its loop) while the writer has nothing queued and no batch running
  is written at once on the caller's thread, as a batch of one: handing it to
  the writer thread and waking the loop back cost a lone predict a tenth of its
  CPU. Batches still form under load, where nothing is alone.

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
let go either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, MetaData, Result, Table, insert

from datawheel.batching import BatchWorker
from datawheel.store.db import WriterTurn, insert_ignore_stmt
from datawheel.store.raw_sqlite import insert_rows

T = TypeVar("T")

MAX_BATCH = 128
IDLE_EXIT_SECONDS = 5.0


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
                 read_users: Callable[[Connection, list[str]], Mapping[str, Any]] | None = None) -> None:
        self.engine = engine
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
        self.worker.submit((fn, user, waiter))
        return waiter

    def _write_now(self, fn: Callable[[Batch], T], user: str | None, waiter: asyncio.Future[T],
                   loop: asyncio.AbstractEventLoop) -> bool:
        """Write ``fn`` as a batch of one if the writer is idle (nothing queued, no batch running); False if not."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            if self.worker.queued():  # queued meanwhile: it goes first, with the worker
                return False
            future: Future[T] = Future()
            self._write([((fn, user, None), future)])
        finally:
            self._turn.release()
        exc = future.exception()
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(future.result())
        if self._keep:  # let the kept connection go once writes stop, as the writer thread does when idle
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = loop.call_later(self.worker.idle_exit, self._release_if_idle)
        return True

    def _release_if_idle(self) -> None:
        self._idle_timer = None
        if self.worker.thread is None and not self.worker.queued():  # a running writer lets it go itself
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

    def _commit(self, batch: list[tuple[Job, Future]]) -> None:
        with self._turn:
            try:
                self._write(batch)
            finally:
                _wake(batch)

    def _write(self, batch: list[tuple[Job, Future]]) -> None:
        done: list[tuple[Future, Any]] = []
        try:
            conn = self._connection()
            with self.writer_turn(), conn.begin():
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
        except BaseException as exc:  # the transaction failed: nothing of this batch is kept
            self._close()  # nor the connection, which may be what failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not self._keep:
            self._close()
        self.batches += 1
        self.writes += len(done)
        for future, result in done:
            future.set_result(result)


def _wake(batch: list[tuple[Job, Future]]) -> None:
    """Hand each coroutine's outcome to its loop: one call per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Future]]] = {}
    for (_, _, waiter), future in batch:
        if waiter is not None:
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, future))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # raised when the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future, Future]]) -> None:
    """On the loop: each waiter gets its write's outcome (a write the batch never ran fails, never hangs)."""
    for waiter, future in outcomes:
        if waiter.done():
            continue
        if future.cancelled():
            waiter.cancel()
        elif not future.done():
            waiter.set_exception(RuntimeError("the group commit stopped before this write ran"))
        elif (exc := future.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(future.result())
