"""kill -9 under load: every write the server acknowledged survives, exactly once, in an intact database.

A real ``datawheel serve`` subprocess takes predictions and feedback from 8 client threads and is killed
with SIGKILL mid-burst, again and again; after each restart every acknowledged (2xx) write must be present
exactly once and ``PRAGMA integrity_check`` must say ``ok``. Group commit answers a request only after the
transaction holding its write committed, so this holds however the writes were batched.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from datawheel.demo.run import digit_splits
from datawheel.tasks.image import to_png_base64
from datawheel.workspace import Workspace

TRIALS = 20
CLIENTS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(ws_root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "datawheel.cli", "serve", str(ws_root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_up(proc: subprocess.Popen, port: int) -> subprocess.Popen:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return proc
        except httpx.HTTPError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)


def _db_path(ws_root: Path) -> Path:
    ws = Workspace.open(ws_root)
    try:
        database = ws.store.engine.url.database
        assert database
        return Path(database)
    finally:
        ws.store.close()


def test_acknowledged_writes_survive_kill_9(tmp_path, template_ws):
    ws_root = tmp_path / "ws"
    shutil.copytree(template_ws, ws_root)
    ws = Workspace.open(ws_root)
    key = ws.secrets.app_key
    ws.store.close()
    db = _db_path(ws_root)
    images = [to_png_base64(p) for p, _ in digit_splits().pool[:16]]
    headers = {"Authorization": f"Bearer {key}"}
    records: set[str] = set()
    feedback: set[str] = set()
    lock = threading.Lock()
    port = _free_port()
    proc = _wait_up(_spawn(ws_root, port), port)

    def client(n: int, stop: threading.Event) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                user = f"crash-{n}-{i % 3}"
                try:
                    r = http.post("/v1/predict", json={"user_id": user, "input": {"image": images[i % 16]}})
                    if r.status_code != 200:
                        continue
                    rid = r.json()["interaction_id"]
                    with lock:
                        records.add(rid)
                    f = http.post("/v1/feedback", json={"interaction_id": rid, "user_id": user, "rating": 1})
                    if f.status_code == 201:
                        with lock:
                            feedback.add(f.json()["id"])
                except httpx.HTTPError:
                    time.sleep(0.01)  # the server is down: it is being killed or restarted

    try:
        for trial in range(TRIALS):
            stop = threading.Event()
            threads = [threading.Thread(target=client, args=(n, stop)) for n in range(CLIENTS)]
            for th in threads:
                th.start()
            time.sleep(0.3 + 0.05 * (trial % 5))  # mid-burst, at a different point each time
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
            for th in threads:
                th.join()
            with sqlite3.connect(db) as conn:  # opening runs WAL recovery, as the next server would
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                stored_records = [r[0] for r in conn.execute("SELECT id FROM records WHERE user_id LIKE 'crash-%'")]
                stored_feedback = [r[0] for r in conn.execute("SELECT id FROM feedback WHERE user_id LIKE 'crash-%'")]
            conn.close()
            assert len(stored_records) == len(set(stored_records))
            assert len(stored_feedback) == len(set(stored_feedback))
            lost = (records - set(stored_records)) | (feedback - set(stored_feedback))
            assert not lost, f"trial {trial}: {len(lost)} acknowledged writes lost"
            port = _free_port()
            proc = _wait_up(_spawn(ws_root, port), port)
        assert len(records) > TRIALS and len(feedback) > TRIALS  # the bursts did write
        print(f"crash safety: {TRIALS} kills, {len(records)} acknowledged predictions, "
              f"{len(feedback)} acknowledged feedback, 0 lost")
    finally:
        proc.kill()
        proc.wait()
