"""One worker thread that serves queued jobs in batches: what group commit and batched inference share.

Callers put a job and get a :class:`~concurrent.futures.Future`; the worker
takes everything queued (up to ``max_batch``) and hands it to ``handle`` as one
batch. A lone job is not held back for company: with ``max_wait`` 0 (the
default) a batch is whatever queued while the previous one ran, which is
exactly when waiting was free; a positive ``max_wait`` lets a small batch wait
that long for more. The thread starts on first use and exits after
``idle_exit`` idle seconds, so an idle owner holds no thread; a thread that
dies is replaced by the next job (or one already queued). ``on_exit`` runs on
the thread as it stops, so what it kept between batches (a database
connection) is let go with it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

P = TypeVar("P")
Job = tuple[P, Future]


class BatchWorker(Generic[P]):
    def __init__(self, handle: Callable[[list[tuple[P, Future]]], None], *, name: str, max_batch: int,
                 idle_exit: float = 5.0, max_wait: float = 0.0, on_exit: Callable[[], None] | None = None) -> None:
        self.handle = handle
        self.on_exit = on_exit
        self.name = name
        self.max_batch = max_batch
        self.idle_exit = idle_exit
        self.max_wait = max_wait
        #: the process that made it: after a fork the child makes its own (threads do not survive a fork)
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[tuple[P, Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, payload: P) -> Future:
        future: Future[Any] = Future()
        with self._lock:  # the worker decides to exit under this lock too, so no job is left unserved
            self._queue.put((payload, future))
            if self._thread is None:
                self._start()
        return future

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def queued(self) -> bool:
        """Whether a job waits for the worker (one it is running is no longer queued)."""
        return not self._queue.empty()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException:
            with self._lock:  # died abnormally: let the next job (or one already queued) start a worker
                if self._thread is threading.current_thread():
                    self._stop()
                if self._thread is None and not self._queue.empty():
                    self._start()
            raise

    def _stop(self) -> None:
        """Let go of the thread, under ``_lock``: no new thread starts before ``on_exit`` is done."""
        try:
            if self.on_exit is not None:
                self.on_exit()
        finally:
            self._thread = None

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._stop()
                        return
                continue
            self._run(self._gather(first))

    def _gather(self, first: tuple[P, Future]) -> list[tuple[P, Future]]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _run(self, batch: list[tuple[P, Future]]) -> None:
        try:
            self.handle(batch)
        except BaseException as exc:
            for _, future in batch:  # no caller waits forever on a batch that blew up
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("batch worker stopped"))
            raise
