"""The operator's CLI, run as a user would: init, cycle, models, promote, rollback, erase."""

from __future__ import annotations

from typer.testing import CliRunner

from datawheel.cli.main import app
from datawheel.demo.run import LABELS
from datawheel.workspace import Workspace

runner = CliRunner()


def text(res) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(res.output.split())


def contribute(root, pool, n: int, user: str = "donor") -> None:
    """``n`` labelled images from the user pool, given with training consent, as the API would store them."""
    from datawheel.workspace import Workspace

    ws = Workspace.open(root)
    for image, label in pool[:n]:
        item = ws.task.parse({"pixels": image.tolist()})
        ws.store.add_record(user_id=user, kind="contribution", input=ws.task.encode(item),
                            content_hash=ws.task.content_hash(item), consent={"training": True}, label=label)
    ws.store.close()


def test_init_cycle_models_promote_rollback(tmp_path, image_dirs, splits):
    """A workspace made from the CLI skips a cycle with nothing new, trains on new data, lists both models, and
    promote/rollback move the champion."""
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["init", str(ws), "--task", "image-classification", "--labels", ",".join(LABELS),
                              "--seed-data", str(image_dirs[0]), "--eval-data", str(image_dirs[1])])
    assert res.exit_code == 0, res.output
    assert "model v1 is champion" in text(res)
    res = runner.invoke(app, ["cycle", str(ws)])
    assert res.exit_code == 0, res.output
    assert "skipped" in text(res) and "no new accepted records since init" in text(res)
    assert "candidate accuracy" not in text(res) and "training candidate" not in text(res)
    contribute(ws, splits.pool, 40)
    res = runner.invoke(app, ["cycle", str(ws)])
    assert res.exit_code == 0, res.output
    assert "decision" in text(res) and "candidate accuracy" in text(res)  # a table, as the demo prints
    res = runner.invoke(app, ["cycle", str(ws), "--json"])  # the same data again: nothing new to learn
    assert res.exit_code == 0 and '"decision": "skipped"' in text(res) and '"candidate_version": null' in text(res)
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


def test_every_table_fits_an_80_column_terminal(ws, splits, monkeypatch):
    """models, datasets, users and audit show stay within 80 columns, and only the one free-text column is cut."""
    from rich.console import Console

    from datawheel.cli import data, main
    from datawheel.wheel.cycle import run_cycle

    contribute(ws.root, splits.pool, 30)
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
    assert "decision" in models and "v2" in models and "89" not in models.split("\n")[0]
    assert "champion" in models  # v1 or v2: what serves is named in the decision column


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


def test_models_names_what_serves_and_why_a_version_was_rejected(ws, monkeypatch):
    """The decision column: the alias a version holds, or the gate's decision with its first reason in short."""
    from rich.console import Console

    from conftest import register_model
    from datawheel.cli import main
    from datawheel.stages.gate import gate

    champion = {"accuracy": 0.95, "macro_f1": 0.95, "per_class_recall": {"3": 0.95, "8": 0.9}}
    worse = {"accuracy": 0.90, "macro_f1": 0.90, "per_class_recall": {"3": 0.7, "8": 0.9}}
    decision = gate(worse, champion, ws.config.gate)  # what the gate really says about such a candidate
    assert not decision.promote and len(decision.reasons) == 3
    version = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    cycle_id = ws.store.start_cycle("test")
    ws.store.finish_cycle(cycle_id, status="done", decision="rejected", champion_version=1, candidate_version=version,
                          report={"decision": "rejected", "decision_reasons": decision.reasons})
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(main, "console", Console())
    out = CliRunner().invoke(app, ["models", str(ws.root)]).output
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    assert lines[0].split()[-1] == "decision"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["v1"].rstrip().endswith("champion")
    assert rows[f"v{version}"].rstrip().endswith("rejected: accuracy fell (+2)"), out


def test_a_gate_reason_is_said_in_a_few_words():
    from datawheel.cli.tables import short_reason
    from datawheel.config import GateSection
    from datawheel.stages.gate import gate

    champion = {"accuracy": 0.95, "macro_f1": 0.95, "per_class_recall": {"3": 0.95, "8": 0.9}}
    one_class = {"accuracy": 0.95, "macro_f1": 0.95, "per_class_recall": {"3": 0.8, "8": 0.95}}
    assert short_reason(gate(one_class, champion, GateSection()).reasons) == "recall '3' fell"
    same = gate(champion, champion, GateSection(), paired={"p_value": 1.0}, more_data=False)
    assert short_reason(same.reasons) == "not significant"
    sliced = {**champion, "slices": {"locale=en": {"n": 40, "accuracy": 0.95}}}
    dropped = {**champion, "slices": {"locale=en": {"n": 40, "accuracy": 0.8}}}
    assert short_reason(gate(dropped, sliced, GateSection()).reasons) == "accuracy on slice locale=en fell"


def test_init_takes_a_scikit_learn_estimator(tmp_path, image_dirs):
    """``--model sklearn --estimator module:factory`` is written to the config and fitted; alone, it is refused."""
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["init", str(ws), "--task", "image-classification", "--labels", ",".join(LABELS),
                              "--seed-data", str(image_dirs[0]), "--eval-data", str(image_dirs[1]),
                              "--model", "sklearn", "--estimator", "sklearn.neighbors:KNeighborsClassifier"])
    assert res.exit_code == 0, res.output
    opened = Workspace.open(ws)
    assert opened.config.model.estimator == "sklearn.neighbors:KNeighborsClassifier"
    assert opened.store.get_model(1)["train_info"]["estimator"] == "sklearn.neighbors:KNeighborsClassifier"
    opened.store.close()
    res = runner.invoke(app, ["init", str(tmp_path / "w2"), "--task", "image-classification", "--labels",
                              ",".join(LABELS), "--seed-data", str(image_dirs[0]), "--eval-data", str(image_dirs[1]),
                              "--estimator", "sklearn.neighbors:KNeighborsClassifier"])
    assert res.exit_code == 2 and "--model sklearn" in text(res) and not (tmp_path / "w2").exists()
