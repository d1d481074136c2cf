"""Group commit: concurrent small writes share one transaction, and so one fsync.

A request's write (a record, a feedback) is handed to one writer thread as a
function of a :class:`Batch`. The writer takes everything queued, opens one
write transaction (``BEGIN IMMEDIATE`` on SQLite), runs each function in turn,
inserts the rows they deferred in one statement per table, commits once, and
only then answers each caller. So:

* durability is unchanged: a caller is answered after the commit holding its
  write (``synchronous=FULL`` stays), never before;
* a write whose own check fails (a consent requirement, a missing row) raises
  in its own caller alone and leaves nothing behind: rows it deferred are
  dropped, and whatever it wrote directly went through :meth:`Batch.direct`
  (its own SAVEPOINT) and is rolled back; the others in the batch still commit;
* if the transaction itself fails (the bulk insert, the commit, the lock),
  every caller in the batch gets the error and none of their writes is kept;
* a lone write does not wait for company: the writer starts a batch as soon as
  anything is queued. Batches form only while a commit is in flight, which is
  exactly when waiting is free.

Why deferred rows: the common write is one plain INSERT whose checks are
reads. Run one by one, each costs a statement build, a savepoint and its
release; deferred, a batch of them is one multi-row INSERT.

The writer is started on first use and exits after a few idle seconds, so an
idle or forgotten store holds no thread and no connection.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, MetaData, Result, Table, insert

from datawheel.batching import BatchWorker
from datawheel.store.db import insert_ignore_stmt, write, writer_turn

T = TypeVar("T")

MAX_BATCH = 128
IDLE_EXIT_SECONDS = 5.0


class Batch:
    """What one write function sees of the shared transaction.

    Reads go straight to the connection (:meth:`read`) and see what earlier
    batches committed, not the rows this batch deferred: those are in ``memo``.
    Plain inserts are *deferred* (:meth:`defer`) and made together after every
    function ran; any other write goes through :meth:`direct`, which opens this
    write's SAVEPOINT first. ``memo`` is shared by the batch's writes (a user
    already looked up, a record already deferred); a write adds to it with
    :meth:`remember`, which like :meth:`defer` counts only if the write returns.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
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
        """The deferred rows, one multi-row INSERT per table, parents first (feedback needs its record)."""
        tables = list(self._rows)
        if len(tables) > 1:
            order = _table_order(tables[0].metadata)
            tables.sort(key=lambda tb: order.get(tb, len(order)))
        for table in tables:
            stmt = insert_ignore_stmt(self.conn, table) if table in self._ignore else insert(table)
            self.conn.execute(stmt, self._rows[table])
        self._rows.clear()


_ORDERS: dict[tuple[int, int], dict[Table, int]] = {}


def _table_order(metadata: MetaData) -> dict[Table, int]:
    """Each table's place in dependency order (parents first); sorting the schema per batch cost a tenth of a
    millisecond, so it is done once per schema."""
    key = (id(metadata), len(metadata.tables))
    order = _ORDERS.get(key)
    if order is None:
        order = _ORDERS[key] = {table: n for n, table in enumerate(metadata.sorted_tables)}
    return order


class GroupCommitter:
    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH, idle_exit: float = IDLE_EXIT_SECONDS) -> None:
        self.engine = engine
        self.worker: BatchWorker[Callable[[Batch], Any]] = BatchWorker(
            self._commit, name="datawheel-group-commit", max_batch=max_batch, idle_exit=idle_exit)
        self.pid = self.worker.pid
        #: batches committed and writes in them, for tests and telemetry
        self.batches = 0
        self.writes = 0

    def submit(self, fn: Callable[[Batch], T]) -> Future[T]:
        """Queue ``fn`` for the next shared transaction; the future resolves once that has committed.

        An async caller awaits it (``asyncio.wrap_future``) without holding a thread while the commit runs.
        """
        future: Future[T] = self.worker.submit(fn)
        return future

    def run(self, fn: Callable[[Batch], T]) -> T:
        """Run ``fn`` in a write transaction shared with concurrent writes; return once that has committed."""
        return self.submit(fn).result()

    def _commit(self, batch: list[tuple[Callable[[Batch], Any], Future]]) -> None:
        done: list[tuple[Future, Any]] = []
        try:
            with writer_turn(self.engine), write(self.engine) as conn:
                shared = Batch(conn)
                for fn, future in batch:
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
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.writes += len(done)
        for future, result in done:
            future.set_result(result)
