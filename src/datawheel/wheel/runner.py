"""Starting cycles without blocking serving: on request, or after every N new labelled records.

A cycle runs in a child process by default (training holds a core for
seconds; serving must not feel it). When it ends, the server re-reads the
champion alias at once, so a promotion is live on the next request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from datawheel.errors import Conflict
from datawheel.models.serving import ModelServer
from datawheel.wheel.cycle import run_cycle, spawn_cycle
from datawheel.workspace import Workspace


class CycleRunner:
    def __init__(self, ws: Workspace, server: ModelServer, *, subprocess: bool = True, auto_every: int = 0,
                 on_finish: Callable[[dict], None] | None = None) -> None:
        self.ws = ws
        self.server = server
        self.subprocess = subprocess
        self.auto_every = auto_every
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, trigger: str = "api", params: dict | None = None) -> str:
        cycle_id = self.ws.store.start_cycle(trigger, params)  # raises Conflict while one runs
        thread = threading.Thread(target=self._run, args=(cycle_id,), name=f"cycle-{cycle_id[:8]}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return cycle_id

    def _run(self, cycle_id: str) -> None:
        store = self.ws.store
        try:
            if self.subprocess:
                proc = spawn_cycle(self.ws.root, cycle_id)
                _, err = proc.communicate()
                if store.get_cycle(cycle_id)["status"] == "running":
                    tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    store.finish_cycle(cycle_id, status="failed",
                                       error=f"cycle process exited with {proc.returncode}: {tail[0][:500]}")
            else:
                # run_cycle records any failure on the cycle row; this thread has no one to raise to
                with contextlib.suppress(Exception):
                    run_cycle(self.ws, cycle_id)
        finally:
            self.server.refresh(force=True)
            if self.on_finish is not None:
                self.on_finish(store.get_cycle(cycle_id))

    def note_labelled(self) -> None:
        """Called after each labelled write; starts a cycle when enough new labels have arrived."""
        if not self.auto_every or not self._lock.acquire(blocking=False):
            return
        try:
            store = self.ws.store
            if store.count_labelled_since(store.last_cycle_start()) >= self.auto_every:
                with contextlib.suppress(Conflict):  # a cycle is already running: the next write asks again
                    self.start("auto")
        finally:
            self._lock.release()

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self._threads):
            thread.join(timeout)
