"""Making an event loop's commits durable with one sync of SQLite's log per round, off the loop.

A group commit made on the event loop's own thread (``GroupCommitter``) commits with
``synchronous=NORMAL``: SQLite writes the transaction to its write-ahead log and returns without syncing
it. The commit is not yet durable, so nobody is answered: the batch's outcomes wait here until a
``fdatasync`` of the log *that started after their commit* has returned. One round runs at a time per
loop, on a helper thread; batches committed while it runs wait for the next round, which takes them all.
So one sync covers every batch committed meanwhile, and the loop never blocks on the disk.

Why not let SQLite sync (``synchronous=FULL``) on a writer thread, as the other writes do: each statement
gives up the GIL, and under load every retake from the busy loop cost futex wake-ups and context switches
(a seventh of the server's CPU, issue 12). Here the statements run on the loop's thread and only the sync
leaves it.

What makes one ``fdatasync`` of the log enough, where SQLite's own sync would run: in WAL mode a commit is
durable once the log's frames up to its commit frame are on disk (recovery replays every frame whose
checksum chain is intact, and stops at the first that is not), and ``fdatasync`` on any descriptor of the
file flushes all of its written pages and its size. The file must be the log SQLite writes: it is opened
while the committing connection is open, and SQLite deletes or replaces its log only when the last
connection to the database closes, after checkpointing it into the database and syncing that. Each round
syncs a duplicate of the descriptor, so closing this one never pulls it from under a round in flight. A log
file SQLite has just created is not durable until its directory is synced too: the first round after
:meth:`WalSync.open` syncs the directory first.

The same thread also checkpoints the log into the database (passively: it waits for nobody, and writers go
on meanwhile) once ``CHECKPOINT_PAGES`` of it are not in the database yet, which the loop reads off the
log's index after a sync, at most every ``CHECKPOINT_LOOK_SECONDS``. A loop
connection's commit that checkpointed, as SQLite does by default past 1,000 pages, stalled the loop for up
to 25 ms; the loop's connection now does so only past ``LOOP_CHECKPOINT_PAGES``, should the thread fall
behind. At 128 connections the 99th percentile fell from 61-72 ms to 47-51 ms.

What differs from ``synchronous=FULL``: a transaction is visible to readers between its commit and its
sync. A reader can therefore see a row that a power cut (not a crash of the process: its written pages
survive in the kernel) would take away, but no writer is answered before its row is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from datawheel.batching import BatchWorker

#: a write's waiter on its loop, and the outcome the group commit gave it (a result or the write's own error)
Outcome = tuple["asyncio.Future[Any]", "Future[Any]"]
log = logging.getLogger(__name__)


class _Rounds:
    """One loop's outcomes waiting for a round, and whether one is running."""

    def __init__(self) -> None:
        self.waiting: list[Outcome] = []
        self.running = False


#: the sync thread checkpoints the log into the database once this many of its pages are not in it yet (SQLite's
#: own default), so the loop's commits need not: one that did stalled the loop for up to 25 ms
CHECKPOINT_PAGES = 1000
#: how often, at most, the loop looks at the log's length (two numbers in the log's index, ``-shm``)
CHECKPOINT_LOOK_SECONDS = 0.02
#: the loop's connection checkpoints only past this many pages of log: a safety net, should the thread fall behind
LOOP_CHECKPOINT_PAGES = 4000
_CHECKPOINT = None  # the sync thread's job that is not a round


#: one round for the sync thread: the log's descriptor, the directory's (first round only), and whom to tell
_Round = tuple[int, int | None, asyncio.AbstractEventLoop, _Rounds, list[Outcome]]


class WalSync:
    def __init__(self) -> None:
        self._fd: int | None = None
        self._dir_fd: int | None = None  # set by open(), synced (and closed) by the next round
        self._database: str | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None  # the sync thread's own
        self._looked_at = 0.0  # when the loop last read the log's length
        self._checkpoint_queued = False
        #: the thread that syncs (started on first use, gone when idle); asyncio's ``run_in_executor`` did more
        #: Python work per round on both threads, each of them taking the GIL: 10 % more server CPU per request
        self._syncer: BatchWorker[_Round | None] = BatchWorker(self._run_rounds, name="datawheel-log-sync",
                                                               max_batch=8, on_exit=self._close_checkpoints)
        self._rounds: dict[asyncio.AbstractEventLoop, _Rounds] = {}
        self._lock = threading.Lock()
        self._closing = False  # its connection is gone: close once the commits waiting on it are synced
        #: a sync that failed: the kernel may have dropped the pages it could not write, so a later sync that
        #: succeeds would prove nothing about them; the group commit stops committing without SQLite's own sync
        self.failed: BaseException | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None and not self._closing

    def open(self, log_path: str) -> None:
        """Hold a descriptor of the log at ``log_path``; call it inside a write transaction of the connection
        whose commits are to be synced (the log then exists, and is the file that connection writes)."""
        with self._lock:
            if self._fd is not None and not self._closing:
                return
            self._close_fds()  # let go with the old connection, kept while its commits waited
            self._database = log_path.removesuffix("-wal")
            fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._dir_fd = os.open(os.path.dirname(log_path) or ".", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd

    def close(self) -> None:
        """Let the descriptor go with its connection, once no commit waits for a sync (a round already running
        syncs its own duplicate)."""
        with self._lock:
            if self.idle():
                self._close_fds()
            else:
                self._closing = True

    def _close_fds(self) -> None:
        fds, self._fd, self._dir_fd, self._closing = (self._fd, self._dir_fd), None, None, False
        for fd in fds:
            if fd is not None:
                os.close(fd)

    def idle(self) -> bool:
        """No outcome waits for a sync: the connection may be let go."""
        return not any(r.running or r.waiting for r in self._rounds.values())

    def sync_now(self) -> None:
        """Sync the log on the caller's thread (a lone write, whose caller has nothing else to do meanwhile)."""
        if self.failed is not None:
            raise self.failed
        fd, dir_fd = self._take()
        try:
            _sync(fd, dir_fd)
        except BaseException as exc:
            self.failed = exc
            raise
        self._checkpoint_later()

    def after_commit(self, loop: asyncio.AbstractEventLoop, outcomes: list[Outcome]) -> None:
        """Settle ``outcomes`` on ``loop`` once a sync that starts from now on has returned; on the loop."""
        rounds = self._rounds.get(loop)
        if rounds is None:
            rounds = self._rounds[loop] = _Rounds()
        rounds.waiting.extend(outcomes)
        if not rounds.running:
            self._start(loop, rounds)

    def _take(self) -> tuple[int, int | None]:
        """A duplicate of the log's descriptor for one sync, and the directory's if it still needs one."""
        with self._lock:
            if self._fd is None:
                raise RuntimeError("the log to sync is not open")
            dir_fd, self._dir_fd = self._dir_fd, None
            return os.dup(self._fd), dir_fd

    def _start(self, loop: asyncio.AbstractEventLoop, rounds: _Rounds) -> None:
        outcomes, rounds.waiting = rounds.waiting, []
        rounds.running = True
        if self.failed is not None:  # a later sync proves nothing about the pages an earlier one lost
            self._finish(loop, rounds, outcomes, self.failed)
            return
        try:
            fd, dir_fd = self._take()
        except BaseException as exc:  # noqa: BLE001 - no sync: every outcome of the round fails, never hangs
            self._finish(loop, rounds, outcomes, exc)
            return
        self._syncer.submit((fd, dir_fd, loop, rounds, outcomes))

    def _checkpoint_later(self) -> None:
        """Look at the log at most every ``CHECKPOINT_LOOK_SECONDS`` and, if it is long, have the sync thread
        checkpoint it; on the loop. The look is two numbers read from the log's index: waking the sync thread to
        read them cost both threads a hand-off of the GIL fifty times a second, however short the log."""
        now = time.monotonic()
        if self._checkpoint_queued or now - self._looked_at < CHECKPOINT_LOOK_SECONDS:
            return
        self._looked_at = now
        database = self._database
        if database is not None and _unchecked_pages(database) >= CHECKPOINT_PAGES:
            self._checkpoint_queued = True
            self._syncer.submit(_CHECKPOINT)

    def _run_rounds(self, batch: list[tuple[_Round | None, Future]]) -> None:
        """On the sync thread: each round's sync, then its outcomes handed back to its loop (one wake-up)."""
        for job, _ in batch:
            if job is None:
                self._checkpoint()
                continue
            fd, dir_fd, loop, rounds, outcomes = job
            error: BaseException | None = None
            try:
                _sync(fd, dir_fd)
            except Exception as exc:  # noqa: BLE001 - the round's writes get it
                error = exc
            with contextlib.suppress(RuntimeError):  # raised when the loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._finish, loop, rounds, outcomes, error, True)

    def _checkpoint(self) -> None:
        """A passive checkpoint (it waits for nobody and nobody waits for it), on the sync thread's connection."""
        self._checkpoint_queued = False
        database = self._database
        if database is None:
            return
        try:
            if self._checkpoint_conn is None:  # read-write, never created: the database is there or nothing is done
                self._checkpoint_conn = sqlite3.connect(f"{Path(database).as_uri()}?mode=rw", uri=True,
                                                        isolation_level=None, check_same_thread=False)
            self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the loop's connection checkpoints past LOOP_CHECKPOINT_PAGES anyway
            log.warning("log checkpoint failed: %s", type(exc).__name__)
            self._close_checkpoints()

    def _close_checkpoints(self) -> None:
        conn, self._checkpoint_conn = self._checkpoint_conn, None
        if conn is not None:
            conn.close()

    def _finish(self, loop: asyncio.AbstractEventLoop, rounds: _Rounds, outcomes: list[Outcome],
                error: BaseException | None, synced: bool = False) -> None:
        rounds.running = False
        if error is not None and synced:
            self.failed = error
        settle(outcomes, error)
        if synced and error is None:
            self._checkpoint_later()
        if rounds.waiting:
            self._start(loop, rounds)
            return
        if self._rounds.get(loop) is rounds:
            del self._rounds[loop]
        with self._lock:
            if self._closing and self.idle():
                self._close_fds()


def _unchecked_pages(database: str) -> int:
    """Pages in the log not yet copied into the database: ``mxFrame - nBackfill`` read from the log's index
    (https://www.sqlite.org/walformat.html: native byte order, offsets 16 and 96); 0 if it cannot be read. Only
    when to checkpoint depends on it."""
    try:
        with open(f"{database}-shm", "rb", buffering=0) as shm:
            head = shm.read(100)
    except OSError:
        return 0
    if len(head) < 100:
        return 0
    frames, backfilled = int.from_bytes(head[16:20], sys.byteorder), int.from_bytes(head[96:100], sys.byteorder)
    return max(0, frames - backfilled)


def _sync(fd: int, dir_fd: int | None) -> None:
    try:
        if dir_fd is not None:
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def settle(outcomes: list[Outcome], error: BaseException | None = None) -> None:
    """Each waiter gets its write's outcome, or the sync's error: an unsynced write is not reported stored."""
    for waiter, future in outcomes:
        if waiter.done():
            continue
        if error is not None:
            waiter.set_exception(error if isinstance(error, Exception) else RuntimeError("the log sync stopped"))
        elif future.cancelled():
            waiter.cancel()
        elif not future.done():
            waiter.set_exception(RuntimeError("the group commit stopped before this write ran"))
        elif (exc := future.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(future.result())
