"""Canary releases: a stable share of users gets the candidate; bad live feedback rolls it back on its own."""

from __future__ import annotations

from conftest import ADMIN, APP, register_model
from datawheel.models.registry import Registry
from datawheel.tasks.image import to_png_base64


def users_split(client, n=400):
    server = client.app.state.services.server
    inside = [f"user{i}" for i in range(n) if server.in_canary(f"user{i}")]
    outside = [f"user{i}" for i in range(n) if not server.in_canary(f"user{i}")]
    return inside, outside


def use(client, splits, user, n) -> dict:
    image, truth = splits.pool[n]
    out = client.post("/v1/predict", headers=APP, json={"user_id": user, "input": {"image": to_png_base64(image)},
                                                        "consent": {"training": True}}).json()
    client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"], "user_id": user,
                                                   "label": truth})
    return out


def test_the_canary_share_is_stable_per_user(client):
    """About canary_share of users are in the canary, and a user's assignment never changes."""
    inside, outside = users_split(client, 2000)
    assert 0.07 <= len(inside) / 2000 <= 0.13
    assert users_split(client, 2000) == (inside, outside)


def test_a_bad_canary_is_rolled_back_by_live_feedback(client, ws, splits):
    """An untrained model as canary answers only its users; after enough wrong answers it is withdrawn."""
    bad = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    started = client.post(f"/v1/models/{bad}/canary", headers=ADMIN)
    assert started.status_code == 200 and started.json()["aliases"]["canary"] == bad
    inside, outside = users_split(client)
    for n in range(20):
        assert use(client, splits, outside[n], n)["model_version"] == 1
    for n in range(ws.config.release.canary_min_feedback - 1):
        assert use(client, splits, inside[n % len(inside)], 100 + n)["model_version"] == bad
    report = client.get("/v1/canary", headers=ADMIN).json()
    assert report["canary"]["with_feedback"] == ws.config.release.canary_min_feedback - 1
    assert report["champion"]["accuracy"] > report["canary"]["accuracy"] + 0.05
    use(client, splits, inside[0], 200)  # the feedback that reaches the minimum
    assert "canary" not in ws.store.aliases()
    assert use(client, splits, inside[0], 201)["model_version"] == 1
    entry = [e for e in client.get("/v1/audit", headers=ADMIN).json()["entries"] if e["action"] == "canary"][-1]
    assert entry["actor"] == "canary-monitor" and "Fisher exact p=" in entry["detail"]["reason"]
    assert client.get("/v1/canary", headers=ADMIN).status_code == 404


def test_a_canary_as_good_as_the_champion_stays(client, ws, splits):
    """The same weights as the champion, under a new version, keep their users after plenty of feedback."""
    twin = register_model(ws, Registry(ws).load(1).module)
    client.post(f"/v1/models/{twin}/canary", headers=ADMIN)
    inside, outside = users_split(client)
    for n in range(60):  # both groups see the same items
        use(client, splits, outside[n], n)
        use(client, splits, inside[n % len(inside)], n)
    assert ws.store.aliases().get("canary") == twin
    assert "canary" not in client.delete("/v1/canary", headers=ADMIN).json()["aliases"]
