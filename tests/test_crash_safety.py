"""kill -9 under load: every write the server acknowledged survives, exactly once, in an intact database.

Two server processes (``datawheel serve``'s own code, each on its port) share one database and take
predictions and feedback from 8 client threads; both are killed with SIGKILL mid-burst, again and again.
After each kill every acknowledged (2xx) write must be present exactly once, and on SQLite ``PRAGMA
integrity_check`` must say ``ok``; then two fresh processes serve the next burst. Group commit answers a
request only after the transaction holding its write committed, so this holds however the writes were
batched, and with two writers taking turns on one database (on SQLite, through the writer lock).

The servers are forked from this already-imported test process, so a restart takes a fraction of a second
rather than the seconds a cold ``python -m datawheel.cli serve`` spends importing; the kill is the same
SIGKILL. PostgreSQL is skipped where no server is reachable at 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

import datawheel.api.app  # noqa: F401 - imported once here, before the forks, so a restart imports nothing
from datawheel.cli.main import serve
from datawheel.demo.run import LABELS, digit_splits
from datawheel.tasks.image import to_png_base64
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

TRIALS = 20
CLIENTS = 8
SERVERS = 2  # processes sharing the database, as `serve --workers 2` runs

#: what a check returns after a crash: the ids of the stored crash-test records and feedback (duplicates kept)
Stored = tuple[list[str], list[str]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_forked(ws_root: Path, port: int) -> None:
    """The child: ``datawheel serve WS --port PORT``, as the command runs it, until it is killed."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    serve(ws_root, host="127.0.0.1", port=port, auto_cycle=0, workers=1)


def _spawn(ws_root: Path, ports: list[int]) -> list[multiprocessing.process.BaseProcess]:
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_serve_forked, args=(ws_root, port), daemon=True) for port in ports]
    for proc in procs:
        proc.start()
    for proc, port in zip(procs, ports):
        _wait_up(proc, port)
    return procs


def _kill(procs: list[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        if proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.join()


def _wait_up(proc: multiprocessing.process.BaseProcess, port: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            assert proc.is_alive(), "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)


def _sqlite_stored(ws_root: Path) -> Callable[[], Stored]:
    ws = Workspace.open(ws_root)
    database = ws.store.engine.url.database
    ws.store.close()
    assert database

    def stored() -> Stored:
        with sqlite3.connect(database) as conn:  # opening runs WAL recovery, as the next server would
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            records = [r[0] for r in conn.execute("SELECT id FROM records WHERE user_id LIKE 'crash-%'")]
            feedback = [r[0] for r in conn.execute("SELECT id FROM feedback WHERE user_id LIKE 'crash-%'")]
        conn.close()
        return records, feedback

    return stored


def _sql_stored(url: str) -> Callable[[], Stored]:
    def stored() -> Stored:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                records = list(conn.execute(text("SELECT id FROM records WHERE user_id LIKE 'crash-%'")).scalars())
                feedback = list(conn.execute(text("SELECT id FROM feedback WHERE user_id LIKE 'crash-%'"))
                                .scalars())
        finally:
            engine.dispose()
        return records, feedback

    return stored


class _Burst:
    """Eight clients predicting and giving feedback as fast as they can; remembers every acknowledged write."""

    def __init__(self, ports: list[int], key: str) -> None:
        self.ports = ports
        self.headers = {"Authorization": f"Bearer {key}"}
        self.images = [to_png_base64(p) for p, _ in digit_splits().pool[:16]]
        self.records: set[str] = set()
        self.feedback: set[str] = set()
        self.lock = threading.Lock()

    def warm(self) -> None:
        """One prediction per server first: the burst then finds them answering at full speed."""
        for port in self.ports:
            httpx.post(f"http://127.0.0.1:{port}/v1/predict", headers=self.headers, timeout=30,
                       json={"user_id": "warm-up", "input": {"image": self.images[0]}}).raise_for_status()

    def client(self, n: int, stop: threading.Event) -> None:
        port = self.ports[n % len(self.ports)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=self.headers, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                user = f"crash-{n}-{i % 3}"
                try:
                    r = http.post("/v1/predict", json={"user_id": user, "input": {"image": self.images[i % 16]}})
                    if r.status_code != 200:
                        continue
                    rid = r.json()["interaction_id"]
                    with self.lock:
                        self.records.add(rid)
                    f = http.post("/v1/feedback", json={"interaction_id": rid, "user_id": user, "rating": 1})
                    if f.status_code == 201:
                        with self.lock:
                            self.feedback.add(f.json()["id"])
                except httpx.HTTPError:
                    time.sleep(0.01)  # the server is down: it is being killed or restarted


def _crash_trials(ws_root: Path, key: str, stored: Callable[[], Stored]) -> str:
    ports = [_free_port() for _ in range(SERVERS)]
    procs = _spawn(ws_root, ports)
    burst = _Burst(ports, key)
    try:
        for trial in range(TRIALS):
            burst.warm()
            stop = threading.Event()
            threads = [threading.Thread(target=burst.client, args=(n, stop)) for n in range(CLIENTS)]
            for th in threads:
                th.start()
            time.sleep(0.5 + 0.1 * (trial % 5))  # mid-burst, at a different point each time
            _kill(procs)
            stop.set()
            for th in threads:
                th.join()
            records, feedback = stored()
            assert len(records) == len(set(records)) and len(feedback) == len(set(feedback))
            lost = (burst.records - set(records)) | (burst.feedback - set(feedback))
            assert not lost, f"trial {trial}: {len(lost)} acknowledged writes lost"
            burst.ports = ports = [_free_port() for _ in range(SERVERS)]
            procs = _spawn(ws_root, ports)
        assert len(burst.records) > TRIALS and len(burst.feedback) > TRIALS  # the bursts did write
    finally:
        _kill(procs)
    return (f"{TRIALS} kills, {len(burst.records)} acknowledged predictions, {len(burst.feedback)} acknowledged "
            "feedback, 0 lost")


def _key(ws_root: Path) -> str:
    ws = Workspace.open(ws_root)
    key = ws.secrets.app_key
    ws.store.close()
    return key


def test_acknowledged_writes_survive_kill_9(tmp_path, template_ws):
    ws_root = tmp_path / "ws"
    shutil.copytree(template_ws, ws_root)
    print("crash safety (sqlite):", _crash_trials(ws_root, _key(ws_root), _sqlite_stored(ws_root)))




def test_acknowledged_writes_survive_kill_9_on_postgres(tmp_path, image_dirs, pg_url):
    ws = init_workspace(tmp_path / "ws", task="image-classification", labels=LABELS, seed_data=image_dirs[0],
                        eval_data=image_dirs[1], db_url=pg_url, epochs=2)
    ws.store.close()
    print("crash safety (postgresql):", _crash_trials(ws.root, _key(ws.root), _sql_stored(pg_url)))
