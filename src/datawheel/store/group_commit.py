"""Group commit: concurrent small writes share one transaction, and so one fsync.

A request's write (a record, a feedback) is handed to one writer thread as a
function of a connection. The writer takes everything queued, opens one write
transaction (``BEGIN IMMEDIATE`` on SQLite), runs each function inside its own
SAVEPOINT, commits once, and only then answers each caller. So:

* durability is unchanged: a caller is answered after the commit holding its
  write (``synchronous=FULL`` stays), never before;
* a write whose own check fails (a consent requirement, a missing row) is
  rolled back to its savepoint and raises in its own caller alone; the others
  in the batch still commit;
* if the transaction itself fails (the commit, the lock), every caller in the
  batch gets the error and none of their writes is kept;
* a lone write does not wait for company: the writer starts a batch as soon as
  anything is queued. Batches form only while a commit is in flight, which is
  exactly when waiting is free.

The writer is started on first use and exits after a few idle seconds, so an
idle or forgotten store holds no thread and no connection.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from datawheel.store.db import write

T = TypeVar("T")

MAX_BATCH = 128
IDLE_EXIT_SECONDS = 5.0


class GroupCommitter:
    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH, idle_exit: float = IDLE_EXIT_SECONDS) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.idle_exit = idle_exit
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[tuple[Callable[[Connection], Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: batches committed and writes in them, for tests and telemetry
        self.batches = 0
        self.writes = 0

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction shared with concurrent writes; return once that has committed."""
        future: Future = Future()
        with self._lock:  # the writer decides to exit under this lock too, so no write is left unserved
            self._queue.put((fn, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="datawheel-group-commit", daemon=True)
                self._thread.start()
        result: T = future.result()
        return result

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException:
            with self._lock:  # died abnormally: let the next write (or one already queued) start a writer
                self._thread = None
                if not self._queue.empty():
                    self._thread = threading.Thread(target=self._loop, name="datawheel-group-commit", daemon=True)
                    self._thread.start()
            raise

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable[[Connection], Any], Future]]) -> None:
        done: list[tuple[Future, Any]] = []
        try:
            with write(self.engine) as conn:
                for fn, future in batch:
                    if not future.set_running_or_notify_cancel():
                        continue
                    try:
                        with conn.begin_nested():  # SAVEPOINT: a failing write is undone alone
                            result = fn(conn)
                    except Exception as exc:  # noqa: BLE001 - handed to its own caller, unchanged
                        future.set_exception(exc)
                    else:
                        done.append((future, result))
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
