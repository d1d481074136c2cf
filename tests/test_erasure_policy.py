"""After an erasure, the `[erasure] champion` policy decides what happens to a serving model trained on the user:
"operator" (the default) says what to run, "retrain" starts the retrain-without at once. The erasure itself
always completes. A retrain-without for a user who was never erased is refused."""

from __future__ import annotations

import tomllib

import pyarrow.parquet as pq
import tomli_w
from typer.testing import CliRunner

from conftest import ADMIN, APP, make_client
from datawheel.cli.main import app
from datawheel.models.registry import Registry
from datawheel.workspace import Workspace
from test_cycle_skip import contribute, trained

RETRAIN = "POST /v1/users/{user_id}/retrain-without"


def with_policy(ws: Workspace, champion: str) -> Workspace:
    """The workspace reopened with ``[erasure] champion`` set, as an operator would edit datawheel.toml."""
    path = ws.root / "datawheel.toml"
    config = tomllib.loads(path.read_text())
    config["erasure"] = {"champion": champion}
    path.write_text(tomli_w.dumps(config))
    return Workspace.open(ws.root)


def champion_trained_on_ann(ws: Workspace, splits) -> int:
    contribute(ws, splits.pool, range(30), "ann")
    contribute(ws, splits.pool, range(30, 60), "bob")
    return trained(ws)["candidate_version"]


def text(res) -> str:
    return " ".join(res.output.split())


def test_the_default_leaves_the_champion_to_the_operator_and_says_what_to_run(ws, splits):
    champion = champion_trained_on_ann(ws, splits)
    assert 'champion = "operator"' in (ws.root / "datawheel.toml").read_text()  # init writes the default down
    with make_client(ws) as client:
        receipt = client.delete("/v1/users/ann", headers=APP).json()
        assert receipt["model_versions_trained_on_user_data"] == [champion]
        assert receipt["serving_model_affected"] is True and receipt["serving_aliases_affected"] == ["champion"]
        assert receipt["action"] == "left_to_operator" and receipt["retrain_cycle_id"] is None
        assert receipt["next_step"] == f"replace the champion: {RETRAIN}"
        assert client.get("/v1/users/ann/data", headers=APP).status_code == 404  # the erasure is done
    assert ws.store.list_cycles()[-1]["trigger"] != "forget"  # nothing was started
    assert ws.store.aliases()["champion"] == champion


def test_retrain_starts_the_replacement_at_once(ws, splits):
    champion = champion_trained_on_ann(ws, splits)
    ws = with_policy(ws, "retrain")
    try:
        with make_client(ws) as client:
            receipt = client.delete("/v1/users/ann", headers=APP).json()
            assert receipt["action"] == "retrain_started" and receipt["serving_model_affected"] is True
            cycle_id = receipt["retrain_cycle_id"]
            assert receipt["next_step"] == f"follow the replacement: GET /v1/cycles/{cycle_id}"
            assert "ann" not in receipt["next_step"]
            client.app.state.services.runner.join(120)
            state = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
        assert state["status"] == "done" and state["trigger"] == "forget", state["error"]
        assert state["report"]["replaces"] == champion and state["decision"] in ("promoted", "rejected")
        table = ws.root / ws.store.get_snapshot(state["report"]["snapshot"]["id"])["path"]
        refs = {r for row in pq.read_table(table).column("user_refs").to_pylist() for r in row}
        assert ws.user_ref("ann") not in refs and ws.user_ref("bob") in refs
    finally:
        ws.store.close()


def test_retrain_while_a_cycle_runs_completes_the_erasure_and_says_so(ws, splits):
    champion_trained_on_ann(ws, splits)
    ws = with_policy(ws, "retrain")
    try:
        running = ws.store.start_cycle("test")  # a cycle "running" in this very process
        with make_client(ws) as client:
            response = client.delete("/v1/users/ann", headers=APP)
            receipt = response.json()
            assert response.status_code == 200 and receipt["records_deleted"] == 30
            assert receipt["action"] == "retrain_blocked" and receipt["retrain_cycle_id"] is None
            assert receipt["next_step"] == f"another cycle is running; when it has finished: {RETRAIN}"
            assert client.get("/v1/users/ann/data", headers=APP).status_code == 404
        assert [c["id"] for c in ws.store.list_cycles() if c["status"] == "running"] == [running]
    finally:
        ws.store.close()


def test_an_erasure_touching_no_serving_model_needs_nothing(ws, splits):
    champion_trained_on_ann(ws, splits)
    ws.store.set_consent("carl", {"training": True})  # held, but in no model
    with make_client(ws) as client:
        receipt = client.delete("/v1/users/carl", headers=APP).json()
    assert receipt["serving_model_affected"] is False and receipt["serving_aliases_affected"] == []
    assert (receipt["action"], receipt["next_step"], receipt["retrain_cycle_id"]) == ("none", "", None)


def test_a_canary_trained_on_the_user_is_left_to_the_operator_even_under_retrain(ws, splits):
    contribute(ws, splits.pool, range(40), "ann")
    report = trained(ws)
    candidate = report["candidate_version"]
    Registry(ws).promote(1, actor="test", reason="v1 back as champion: the candidate goes on trial")
    ws = with_policy(ws, "retrain")
    try:
        with make_client(ws) as client:
            assert client.post(f"/v1/models/{candidate}/canary", headers=ADMIN).status_code == 200
            receipt = client.delete("/v1/users/ann", headers=APP).json()
        assert receipt["serving_aliases_affected"] == ["canary"] and receipt["action"] == "left_to_operator"
        assert receipt["next_step"] == "stop the canary: DELETE /v1/canary"
    finally:
        ws.store.close()


def test_retrain_without_a_user_never_erased_is_refused(ws, splits):
    champion_trained_on_ann(ws, splits)
    with make_client(ws) as client:
        held = client.post("/v1/users/ann/retrain-without", headers=ADMIN)
        assert held.status_code == 409 and "has not been erased; erase them first" in held.json()["detail"]
        stranger = client.post("/v1/users/nobody-at-all/retrain-without", headers=ADMIN)
        assert stranger.status_code == 409 and "nothing to retrain" in stranger.json()["detail"]
        assert "nobody-at-all" not in stranger.text  # the id sent is never echoed
    assert all(c["trigger"] != "forget" for c in ws.store.list_cycles())
    res = CliRunner().invoke(app, ["retrain-without", str(ws.root), "--user", "ann"])
    assert res.exit_code == 2 and "has not been erased" in text(res) and "training" not in text(res)


def test_retrain_without_after_an_erasure_that_missed_the_champion_trains_nothing(ws, splits):
    """Erased, but the champion never saw them (a rejected candidate did): the turn ends, naming why."""
    contribute(ws, splits.pool, range(40), "ann")
    report = trained(ws)
    Registry(ws).promote(1, actor="test", reason="v1 back as champion")
    ws.store.set_consent("ann", {"training": False})  # ann's labels stay out of every later snapshot
    contribute(ws, splits.pool, range(40, 80), "bob")
    Registry(ws).promote(trained(ws)["candidate_version"], actor="test", reason="bob's model as champion")
    receipt = ws.erase_user("ann")
    champion = ws.store.aliases()["champion"]
    assert receipt["model_versions_trained_on_user_data"] == [report["candidate_version"]] != [champion]
    res = CliRunner().invoke(app, ["retrain-without", str(ws.root), "--user", "ann"])
    assert res.exit_code == 0, res.output
    assert "unchanged" in text(res) and "was not trained on the erased user's data" in text(res)
    assert ws.store.list_models()[-1]["version"] == champion


def test_cli_erase_prints_what_to_run_or_trains_the_replacement(ws, splits):
    champion = champion_trained_on_ann(ws, splits)
    res = CliRunner().invoke(app, ["erase", str(ws.root), "ann"])
    assert res.exit_code == 0, res.output
    assert f"the champion v{champion} was trained on this user's data" in text(res)
    assert f"to replace it, run: datawheel retrain-without {ws.root} --user <the same id>" in text(res)
    retrain = with_policy(ws, "retrain")
    retrain.store.close()
    res = CliRunner().invoke(app, ["erase", str(ws.root), "bob"])
    assert res.exit_code == 0, res.output
    assert 'champion = "retrain": training its replacement now' in text(res)
    assert "replaces champion" in text(res) and f"{champion}" in text(res)
    forget = [c for c in ws.store.list_cycles() if c["trigger"] == "forget"]
    assert len(forget) == 1 and forget[0]["status"] == "done"
