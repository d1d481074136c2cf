"""`datawheel serve --workers 2`: both worker processes serve, and a promotion reaches every one of them within
the refresh interval (1 s) with no failed request while they swap."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from conftest import register_model
from datawheel.demo.run import digit_splits
from datawheel.models.registry import Registry
from datawheel.tasks.image import to_png_base64
from datawheel.workspace import Workspace

REFRESH_INTERVAL = 1.0  # Settings.refresh_interval's default: how soon another process's promotion is seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


def test_every_worker_serves_a_promotion_without_a_failed_request(tmp_path, template_ws):
    root = tmp_path / "ws"
    shutil.copytree(template_ws, root)
    ws = Workspace.open(root)
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    key = ws.secrets.app_key
    image = to_png_base64(digit_splits().pool[0][0])
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "datawheel.cli", "serve", str(root), "--port", str(port),
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    answers: list[tuple[int, int | None, bool]] = []  # (status, model version, sent after the refresh interval)
    refreshed = threading.Event()
    stop = threading.Event()

    def client(n: int) -> None:
        while not stop.is_set():
            after = refreshed.is_set()
            # a new connection each time: the kernel hands it to either worker
            r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", timeout=30,
                           headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                           json={"user_id": f"worker-test-{n}", "input": {"image": image}})
            answers.append((r.status_code, r.json().get("model_version"), after))

    try:
        _wait_up(proc, port)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        while len(answers) < 20:
            time.sleep(0.05)
        Registry(ws).promote(v2, actor="test", reason="a promotion while two workers serve")
        time.sleep(REFRESH_INTERVAL * 1.5)
        refreshed.set()
        seen = len(answers)
        while len(answers) < seen + 60:
            time.sleep(0.05)
        stop.set()
        for th in threads:
            th.join()
    finally:
        stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        ws.store.close()
    assert all(status == 200 for status, _, _ in answers), {status for status, _, _ in answers}
    assert {version for _, version, _ in answers} == {1, v2}
    late = [version for _, version, after in answers if after]
    assert len(late) >= 60 and set(late) == {v2}  # 60 new connections: both workers answered, both with v2
