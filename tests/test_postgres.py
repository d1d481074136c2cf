"""The store on PostgreSQL: the same workspace, API and cycle, against a real server on 127.0.0.1:5432.

Each test gets a database of its own, dropped afterwards. Where no server is
reachable the tests are skipped, saying so.
"""

from __future__ import annotations

import threading

import pytest

from conftest import ADMIN, APP, make_client
from datawheel.demo.run import LABELS
from datawheel.tasks.image import to_png_base64
from datawheel.wheel.init import init_workspace


def test_workspace_api_and_cycle_on_postgres(tmp_path, image_dirs, splits, pg_url):
    """init --db, concurrent first requests of one user, feedback, a cycle and an erasure all work on PostgreSQL."""
    ws = init_workspace(tmp_path / "ws", task="image-classification", labels=LABELS, seed_data=image_dirs[0],
                        eval_data=image_dirs[1], db_url=pg_url, epochs=5)
    assert ws.store.engine.dialect.name == "postgresql"
    with make_client(ws) as client:
        results: list[dict] = []

        def first_use(n: int) -> None:
            r = client.post("/v1/predict", headers=APP, json={
                "user_id": "pat", "input": {"image": to_png_base64(splits.pool[n][0])}, "consent": {"training": True}})
            results.append(r.json() if r.status_code == 200 else {"status": r.status_code})

        threads = [threading.Thread(target=first_use, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all("interaction_id" in r for r in results), results
        for r in results:
            assert client.post("/v1/feedback", headers=APP, json={
                "interaction_id": r["interaction_id"], "user_id": "pat", "label": "1"}).status_code == 201
        cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
        client.app.state.services.runner.join(120)
        state = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
        assert state["status"] == "done", state["error"]
        assert state["report"]["records_in"] == 4
        receipt = client.delete("/v1/users/pat", headers=APP).json()
        assert receipt["records_deleted"] == 4
    ws.store.close()


def test_init_refuses_a_database_that_already_holds_a_workspace(tmp_path, image_dirs, pg_url):
    """Two workspaces cannot share one database; the second init fails and leaves the first intact."""
    first = init_workspace(tmp_path / "a", task="image-classification", labels=LABELS, seed_data=image_dirs[0],
                           eval_data=image_dirs[1], db_url=pg_url, epochs=2)
    from datawheel.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="already holds"):
        init_workspace(tmp_path / "b", task="image-classification", labels=LABELS, seed_data=image_dirs[0],
                       eval_data=image_dirs[1], db_url=pg_url, epochs=2)
    assert first.store.aliases() == {"champion": 1}
    assert not (tmp_path / "b").exists()
    first.store.close()
