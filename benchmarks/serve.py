"""How fast ``POST /v1/predict`` answers under load, against a plain FastAPI baseline doing the same work.

    python benchmarks/serve.py [--connections 1,8,32,128] [--duration 5] [--only baseline|datawheel]
                               [--workers 1,2] [--workdir DIR] [--keep]

The baseline (written below, run with uvicorn like ``datawheel serve``): decode the base64 PNG, make it a
28x28 grey image, run a 784->1000->10 MLP, insert the raw upload into SQLite (WAL, ``synchronous=FULL``)
with one commit per request, answer. ``datawheel serve`` runs on a workspace built for the run from
scikit-learn's digits (as ``datawheel demo`` does). Both get the same payloads: MNIST-size (28x28) PNG
digits, one user id per payload. Each is driven by ``wrk`` (a Lua script supplies the POST bodies) at each
connection count for ``--duration`` seconds, after a short warm-up; datawheel once per ``--workers`` count
(``serve --workers N``). Prints a Markdown table: req/s, p50, p99, errors (socket errors plus non-2xx
answers) and the server's CPU time per request (all its processes, user + system; Linux only) for each, and
each datawheel run's share of the baseline at 32 connections. CPU per request is the steadier number on a
shared machine: req/s moves with whatever else runs, the work a request costs does not. Needs ``wrk``
(Debian/Ubuntu: ``apt-get install -y wrk``, which ``make install`` runs as root; macOS: ``brew install wrk``).
Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

N_PAYLOADS = 64


# -- the baseline --------------------------------------------------------------------------------

def baseline_app(db_path: str) -> Any:  # FastAPI is imported here: only the server process needs it
    import torch
    from fastapi import FastAPI

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1000), torch.nn.ReLU(),
                                torch.nn.Linear(1000, 10)).eval()
    local = threading.local()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS uploads (id INTEGER PRIMARY KEY, user_id TEXT, body BLOB, "
                     "label TEXT, created_at REAL)")

    def db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(db_path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA synchronous=FULL")
            local.conn = conn
        return conn

    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: dict) -> dict:
        raw = base64.b64decode(body["input"]["image"])
        img = Image.open(io.BytesIO(raw)).convert("L").resize((28, 28))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0]
        label = str(int(torch.argmax(probs)))
        conn = db()
        cur = conn.execute("INSERT INTO uploads (user_id, body, label, created_at) VALUES (?, ?, ?, ?)",
                           (body["user_id"], raw, label, time.time()))
        conn.commit()
        return {"interaction_id": str(cur.lastrowid), "label": label,
                "scores": {str(i): round(float(p), 6) for i, p in enumerate(probs)}}

    return app


def run_baseline_server(port: int, db_path: str) -> None:
    import uvicorn

    uvicorn.run(baseline_app(db_path), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- payloads, servers, wrk ------------------------------------------------------------------------

def payloads() -> list[dict]:
    from datawheel.demo.run import digit_splits
    from datawheel.tasks.image import to_png_base64

    pool = digit_splits().pool[:N_PAYLOADS]
    out = []
    for n, (pixels, _label) in enumerate(pool):
        big = np.asarray(Image.fromarray(pixels).resize((28, 28), Image.Resampling.BILINEAR))  # MNIST-size
        out.append({"user_id": f"bench-user-{n % 16}", "input": {"image": to_png_base64(big)}})
    return out


def build_workspace(root: Path) -> tuple[Path, str]:
    from datawheel.demo.run import LABELS, digit_splits, write_image_folder
    from datawheel.wheel.init import init_workspace

    splits = digit_splits()
    seed = write_image_folder(root / "import" / "seed", splits.seed)
    golden = write_image_folder(root / "import" / "golden", splits.golden)
    ws = init_workspace(root / "ws", task="image-classification", labels=LABELS, seed_data=seed,
                        eval_data=golden, epochs=5)
    key = ws.secrets.app_key
    ws.store.close()
    return root / "ws", key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the app answers (with ``--workers`` the socket accepts before any worker has loaded the app)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def lua_script(path: Path, bodies: list[dict], key: str) -> None:
    quoted = ",\n".join("[==[" + json.dumps(b) + "]==]" for b in bodies)
    path.write_text(f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local bodies = {{
{quoted}
}}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
""")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def tree_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by a process and every process under it (``serve --workers N``
    runs N workers under a supervisor); None where there is no /proc."""
    try:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # exited meanwhile
                    continue
    except OSError:
        return None
    if pid not in stats:
        return None
    family, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        family.add(parent)
        todo += [p for p, fields in stats.items() if int(fields[1]) == parent and p not in family]
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in family)
    return ticks / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "requests": requests}


def bench(name: str, cmd: list[str], port: int, script: Path, connections: list[int], duration: int,
          log: Path, env: dict | None = None) -> dict[int, dict]:
    # To a file: the server logs a line per request, and a pipe nobody reads would fill and stall it.
    with log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        try:
            wait_up(port, proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{name}: {exc} (its log: {log}; keep it with --keep)") from None
        url = f"http://127.0.0.1:{port}/v1/predict"
        run_wrk(url, script, 8, 2)  # warm-up: first requests load lazily, fill caches
        results = {}
        for c in connections:
            before = tree_cpu(proc.pid)
            results[c] = r = run_wrk(url, script, c, duration)
            after = tree_cpu(proc.pid)
            r["cpu_ms"] = None if before is None or after is None else 1e3 * (after - before) / max(r["requests"], 1)
            cpu = "-" if r["cpu_ms"] is None else f"{r['cpu_ms']:.3f}"
            print(f"  {name:12} c={c:<4} {r['rps']:8.1f} req/s  p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.1f} ms  "
                  f"errors {r['errors']}  cpu {cpu} ms/req", file=sys.stderr)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def table(results: dict[str, dict[int, dict]], connections: list[int]) -> str:
    rows = ["| server | connections | req/s | p50 ms | p99 ms | errors | server CPU ms/req |",
            "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        for c in connections:
            r = runs[c]
            cpu = "-" if r.get("cpu_ms") is None else f"{r['cpu_ms']:.2f}"
            rows.append(f"| {name} | {c} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.1f} | {r['errors']} | {cpu} |")
    out = "\n".join(rows)
    if "baseline" in results and 32 in connections:
        base = max(results["baseline"][32]["rps"], 1e-9)
        for name, runs in results.items():
            if name != "baseline":
                out += f"\n\n{name} / baseline at 32 connections: {runs[32]['rps'] / base:.2f}x req/s"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="1,8,32,128")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--only", choices=("baseline", "datawheel"))
    parser.add_argument("--workers", default="1,2", help="datawheel runs: one per `serve --workers N` count")
    parser.add_argument("--workdir", type=Path, help="build the workspace here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline_server(int(args.baseline_server[0]), args.baseline_server[1])
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)")
    connections = [int(c) for c in args.connections.split(",")]
    base = args.workdir or Path(tempfile.mkdtemp(prefix="datawheel-serve-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        print("building the workspace...", file=sys.stderr)
        ws_root, key = build_workspace(base)
        script = base / "predict.lua"
        lua_script(script, payloads(), key)
        results: dict[str, dict[int, dict]] = {}
        if args.only in (None, "baseline"):
            port = free_port()
            results["baseline"] = bench("baseline", [sys.executable, __file__, "--baseline-server", str(port),
                                                     str(base / "baseline.db")], port, script, connections,
                                        args.duration, base / "baseline.log")
        if args.only in (None, "datawheel"):
            for workers in (int(w) for w in args.workers.split(",")):
                name = "datawheel" if workers == 1 else f"datawheel-w{workers}"
                port = free_port()
                results[name] = bench(name, [sys.executable, "-m", "datawheel.cli", "serve", str(ws_root), "--port",
                                             str(port), "--workers", str(workers)], port, script, connections,
                                      args.duration, base / f"{name}.log", env=dict(os.environ))
        print(table(results, connections))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
