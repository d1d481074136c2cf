"""The operator's CLI, run as a user would: init, cycle, models, promote, rollback, erase."""

from __future__ import annotations

from typer.testing import CliRunner

from datawheel.cli.main import app
from datawheel.demo.run import LABELS

runner = CliRunner()


def text(res) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(res.output.split())


def test_init_cycle_models_promote_rollback(tmp_path, image_dirs):
    """A workspace made from the CLI runs a cycle, lists both models, and promote/rollback move the champion."""
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["init", str(ws), "--task", "image-classification", "--labels", ",".join(LABELS),
                              "--seed-data", str(image_dirs[0]), "--eval-data", str(image_dirs[1])])
    assert res.exit_code == 0, res.output
    assert "model v1 is champion" in text(res)
    res = runner.invoke(app, ["cycle", str(ws)])
    assert res.exit_code == 0, res.output
    assert "decision" in text(res) and "candidate accuracy" in text(res)  # a table, as the demo prints
    res = runner.invoke(app, ["cycle", str(ws), "--json"])
    assert res.exit_code == 0 and '"decision"' in text(res)
    res = runner.invoke(app, ["models", str(ws)])
    assert "v1" in text(res) and "v2" in text(res)
    res = runner.invoke(app, ["promote", str(ws), "2"])
    assert res.exit_code == 0 and "champion is now v2" in text(res)
    res = runner.invoke(app, ["rollback", str(ws)])
    assert res.exit_code == 0 and "champion is now v1" in text(res)


def test_errors_are_one_clear_line_and_exit_2(tmp_path, image_dirs):
    """A bad option or a missing workspace is reported in one line, without a traceback."""
    res = runner.invoke(app, ["init", str(tmp_path / "w"), "--task", "video", "--labels", "a,b",
                              "--seed-data", str(image_dirs[0]), "--eval-data", str(image_dirs[1])])
    assert res.exit_code == 2 and "workspace.task" in text(res) and "Traceback" not in text(res)
    res = runner.invoke(app, ["cycle", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a datawheel workspace" in text(res)
    res = runner.invoke(app, ["erase", str(tmp_path / "nowhere"), "u1"])
    assert res.exit_code == 2


def test_serve_answers_over_http(tmp_path, template_ws):
    """`datawheel serve` starts the API on the given port, with the workspace's keys, and stops cleanly."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from datawheel.workspace import Workspace

    ws_root = tmp_path / "ws"
    shutil.copytree(template_ws, ws_root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "datawheel.cli", "serve", str(ws_root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "champion_version": 1}
        key = Workspace.open(ws_root).secrets.admin_key
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert [m["version"] for m in models.json()["models"]] == [1]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out.decode()


def test_every_table_fits_an_80_column_terminal(ws, monkeypatch):
    """models, datasets, users and audit show stay within 80 columns, and only the one free-text column is cut."""
    from rich.console import Console

    from datawheel.cli import data, main
    from datawheel.wheel.cycle import run_cycle

    run_cycle(ws, ws.store.start_cycle("test"))
    ws.store.set_consent("a-user-with-a-rather-long-pseudonymous-identifier-0123456789", {"training": True})
    for module in (main, data):
        monkeypatch.setattr(module, "console", Console(width=80, force_terminal=False))
    runner = CliRunner()
    for args in (["models"], ["datasets"], ["users"], ["audit", "show", "--last", "30"]):
        out = runner.invoke(app, [*args, str(ws.root)])
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert lines and max(len(line) for line in lines) <= 80, out.output
        header = lines[0].split()
        assert all("…" not in h for h in header), out.output  # every header whole
    models = runner.invoke(app, ["models", str(ws.root)]).output
    assert "decision" in models and "init" in models and "v2" in models and "89" not in models.split("\n")[0]


def test_a_placeholder_key_is_refused_in_one_line_that_never_prints_it(template_ws):
    """A bad DATAWHEEL_ key stops `serve` with the variable's name, no traceback and no trace of the value."""
    import pydantic
    import pytest

    from datawheel.errors import ConfigError
    from datawheel.settings import Settings, load_settings

    for value in ("changeme", "too-short-key"):
        res = runner.invoke(app, ["serve", str(template_ws)], env={"DATAWHEEL_ADMIN_KEY": value})
        assert res.exit_code == 2, res.output
        assert "DATAWHEEL_ADMIN_KEY" in text(res) and value not in res.output and "Traceback" not in res.output
        with pytest.raises(ConfigError) as err:
            load_settings(admin_key=value)
        assert value not in str(err.value)
        with pytest.raises(pydantic.ValidationError) as raw:  # even the raw error hides the input
            Settings(admin_key=value)
        assert value not in str(raw.value)
