"""Shadow mode: a candidate predicts on live traffic beside the champion, and only the champion answers."""

from __future__ import annotations

import pytest

from conftest import ADMIN, APP
from datawheel.tasks.image import to_png_base64


def train_candidate(client, splits) -> int:
    for n in range(30):
        out = client.post("/v1/predict", headers=APP, json={
            "user_id": f"u{n % 3}", "input": {"image": to_png_base64(splits.pool[n][0])},
            "consent": {"training": True}}).json()
        client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"],
                                                       "user_id": f"u{n % 3}", "label": splits.pool[n][1]})
    cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
    client.app.state.services.runner.join(300)
    state = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
    assert state["status"] == "done", state["error"]
    if state["decision"] == "promoted":
        client.post("/v1/rollback", headers=ADMIN)  # keep v1 as champion: the candidate is the challenger
    return state["candidate_version"]


def test_shadow_predicts_beside_the_champion_and_reports_agreement_and_accuracy(client, splits, ws):
    """Every live prediction gets a shadow answer; the report compares them, with and without feedback."""
    candidate = train_candidate(client, splits)
    assert client.get("/v1/shadow", headers=ADMIN).status_code == 404  # none running
    assert client.post("/v1/models/1/shadow", headers=ADMIN).status_code == 409  # the champion itself
    assert client.post("/v1/models/99/shadow", headers=ADMIN).status_code == 404
    started = client.post(f"/v1/models/{candidate}/shadow", headers=ADMIN)
    assert started.status_code == 200 and started.json()["aliases"]["shadow"] == candidate
    answers = []
    for n in range(100, 140):
        image, truth = splits.pool[n]
        out = client.post("/v1/predict", headers=APP, json={"user_id": "s", "input": {"image": to_png_base64(image)},
                                                            "consent": {"training": True}}).json()
        assert out["model_version"] == 1  # only the champion answers
        answers.append(out)
        if n < 120:  # feedback on half of them
            client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"], "user_id": "s",
                                                           "label": truth})
    report = client.get("/v1/shadow", headers=ADMIN).json()
    assert report["version"] == candidate and report["predictions"] == 40 and report["with_feedback"] == 20
    assert 0.0 <= report["agreement_with_champion"] <= 1.0
    truths = [splits.pool[n][1] for n in range(100, 120)]
    assert report["champion_accuracy"] == round(sum(a["label"] == t for a, t in zip(answers, truths)) / 20, 6)
    assert report["shadow_accuracy"] is not None
    # stopping keeps the record of the run; erasing the user removes its rows
    assert "shadow" not in client.delete("/v1/shadow", headers=ADMIN).json()["aliases"]
    assert client.get(f"/v1/shadow?version={candidate}", headers=ADMIN).json()["predictions"] == 40
    client.delete("/v1/users/s", headers=APP)
    assert client.get(f"/v1/shadow?version={candidate}", headers=ADMIN).json()["predictions"] == 0


def test_promoting_the_shadow_ends_the_shadow_run(client, splits):
    """Once the shadow becomes champion there is nothing left to shadow; other promotions keep the shadow."""
    candidate = train_candidate(client, splits)
    client.post(f"/v1/models/{candidate}/shadow", headers=ADMIN)
    aliases = client.post(f"/v1/models/{candidate}/promote", headers=ADMIN).json()["aliases"]
    assert aliases == {"champion": candidate, "previous": 1}


def test_shadow_alias_arithmetic():
    """Promotion and rollback keep a shadow unless it becomes the champion; the champion cannot shadow itself."""
    from datawheel.errors import Conflict
    from datawheel.stages import release

    aliases = {"champion": 2, "previous": 1, "shadow": 3}
    assert release.promote(aliases, 4) == {"champion": 4, "previous": 2, "shadow": 3}
    assert release.promote(aliases, 3) == {"champion": 3, "previous": 2}
    assert release.rollback(aliases) == {"champion": 1, "previous": 2, "shadow": 3}
    assert release.trial(aliases, "shadow", None) == {"champion": 2, "previous": 1}
    with pytest.raises(Conflict):
        release.trial(aliases, "shadow", 2)
    both = release.trial(aliases, "canary", 4)
    assert release.promote(both, 4) == {"champion": 4, "previous": 2, "shadow": 3}


def test_the_python_client_covers_shadow_and_annotation_routes(ws, splits):
    """A product's operator and annotation tools can drive both features through datawheel.Client over HTTP."""
    from datawheel.api.app import create_app
    from datawheel.client import Client, ClientError
    from datawheel.demo.run import BackgroundServer, _free_port
    from datawheel.settings import Settings

    annotator_key = "annotator-key-for-client-test-0123"
    app = create_app(ws, Settings(cycle_in_subprocess=False, annotator_key=annotator_key))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with BackgroundServer(app, port), Client(url, ws.secrets.app_key) as product, \
            Client(url, ws.secrets.admin_key) as operator, Client(url, annotator_key) as annotator:
        for n in range(30):
            image, truth = splits.pool[n]
            out = product.predict(f"u{n % 3}", {"image": to_png_base64(image)}, consent=True)
            product.feedback(out.interaction_id, f"u{n % 3}", label=truth)
        state = operator.wait_cycle(operator.start_cycle(), timeout=300)
        assert state.status == "done", state.error
        if state.decision == "promoted":
            operator.rollback()
        assert operator.start_shadow(state.candidate_version).aliases["shadow"] == state.candidate_version
        product.predict("u0", {"image": to_png_base64(splits.pool[200][0])})
        assert operator.shadow_report().predictions == 1
        assert "shadow" not in operator.stop_shadow().aliases
        queue = annotator.annotation_queue(limit=2).items
        assert len(queue) == 2 and annotator.annotate(queue[0].item_id, "4").label == "4"
        with pytest.raises(ClientError) as refused:
            annotator.annotate(queue[1].item_id, "forty")
        assert refused.value.status == 422
