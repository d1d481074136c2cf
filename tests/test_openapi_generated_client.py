"""``/openapi.json`` as a contract: a client generated from it (openapi-python-client) works, typed.

The client is generated once per module from the document a real app serves, imported, and driven through
predict, an interaction logged with the product's own model, feedback and the user's export, in-process
(the generated client takes a ready-made HTTP client: Starlette's ``TestClient``, an httpx-compatible one,
over the app). It must hand back
its own typed models holding the values the server sent; when the document drifts from what the routes
take or send, generation, parsing or these checks fail. Every JSON answer seen is also validated against
the schema the document declares for its status.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from conftest import APP_KEY, make_client
from datawheel.demo.run import LABELS
from datawheel.tasks.image import to_png_base64
from datawheel.workspace import Workspace

PACKAGE = "datawheel_generated_client"
#: no post-generation hooks: generation runs nothing but the generator itself (no formatter, no network)
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"


def _generate(spec: dict, root: Path) -> None:
    (root / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(root / "spec.json"),
         "--output-path", str(root / PACKAGE), "--config", str(root / "config.yaml"), "--meta", "none"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the generator warns (and still succeeds) when it cannot type part of the document: that is drift too
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, template_ws: Path) -> Iterator[SimpleNamespace]:
    """The generated package and the document it came from."""
    if importlib.util.find_spec("openapi_python_client") is None:
        pytest.skip("openapi-python-client is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("generated")
    shutil.copytree(template_ws, root / "ws")
    ws = Workspace.open(root / "ws")
    try:
        with make_client(ws) as client:
            spec = client.get("/openapi.json").json()
    finally:
        ws.store.close()
    _generate(spec, root)
    sys.path.insert(0, str(root))
    try:
        yield SimpleNamespace(spec=spec, pkg=importlib.import_module(PACKAGE),
                              api=lambda name: importlib.import_module(f"{PACKAGE}.api.{name}"),
                              models=importlib.import_module(f"{PACKAGE}.models"))
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class Checked:
    """The generated client over the in-process app, validating every JSON answer against the document."""

    def __init__(self, generated: SimpleNamespace, http: Any) -> None:
        import jsonschema_rs  # comes with schemathesis (the dev extra)

        self.spec = generated.spec
        self.validator_for = jsonschema_rs.validator_for
        self.seen: list[str] = []
        http.event_hooks["response"].append(self._check)
        self.client = generated.pkg.AuthenticatedClient(base_url=str(http.base_url), token=APP_KEY)
        self.client.set_httpx_client(http)

    def _check(self, response: Any) -> None:
        response.read()
        method, path = response.request.method.lower(), response.request.url.path
        template = next(p for p in self.spec["paths"] if _matches(p, path))
        declared = self.spec["paths"][template][method]["responses"][str(response.status_code)]
        schema = declared["content"]["application/json"]["schema"]
        validator = self.validator_for({**schema, "components": self.spec["components"]})
        errors = [str(e) for e in validator.iter_errors(response.json())]
        assert not errors, f"{method.upper()} {path} {response.status_code}: {errors[:3]}"
        self.seen.append(f"{method.upper()} {template} {response.status_code}")


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(p == g or p.startswith("{") for p, g in zip(parts, given))


@pytest.fixture
def api(generated: SimpleNamespace, ws: Workspace) -> Iterator[Checked]:
    with make_client(ws) as http:
        http.headers["Authorization"] = f"Bearer {APP_KEY}"  # what AuthenticatedClient adds to a client it builds
        yield Checked(generated, http)


def _digit(splits, i: int) -> str:
    return to_png_base64(splits.pool[i][0])


def test_predict_feedback_and_export_through_the_generated_client(generated, api, splits):
    m = generated.models
    predict = generated.api("predict.predict")
    log_interaction = generated.api("records.log_interaction")
    add_feedback = generated.api("records.add_feedback")
    export = generated.api("users.export_user_data")

    answer = predict.sync(client=api.client, body=m.PredictIn(
        user_id="gen-user", input_=m.ImageInput(image=_digit(splits, 0)),
        consent=m.Consent(training=True)))
    assert isinstance(answer, m.PredictOut)
    assert isinstance(answer.label, str) and answer.label in LABELS
    assert isinstance(answer.model_version, int) and answer.model_version == 1
    assert set(answer.scores.additional_properties) == set(LABELS)
    assert sum(answer.scores.additional_properties.values()) == pytest.approx(1.0, abs=1e-3)

    pixels = predict.sync(client=api.client, body=m.PredictIn(
        user_id="gen-user", input_=m.PixelsInput(pixels=[[0.0, 255.0, 0.0]] * 3)))
    assert isinstance(pixels, m.PredictOut) and pixels.label in LABELS

    theirs = log_interaction.sync(client=api.client, body=m.InteractionIn(
        user_id="gen-user", input_=m.ImageInput(image=_digit(splits, 1)), output_label="7",
        model_name="their-model", model_version="gpt-4o-2024-08-06",
        scores=m.InteractionInScoresType0.from_dict({"7": 0.75, "1": 0.25})))
    assert isinstance(theirs, m.Created) and theirs.id
    by_number = log_interaction.sync(client=api.client, body=m.InteractionIn(
        user_id="gen-user", input_=m.ImageInput(image=_digit(splits, 2)), output_label="4",
        model_name="datawheel", model_version=answer.model_version))
    assert isinstance(by_number, m.Created)

    fb = add_feedback.sync(client=api.client, body=m.FeedbackIn(
        interaction_id=answer.interaction_id, user_id="gen-user", label="3"))
    assert isinstance(fb, m.Created)

    data = export.sync(client=api.client, user_id="gen-user")
    assert isinstance(data, m.UserDataOut) and data.user_id == "gen-user"
    assert isinstance(data.consent, m.ConsentState) and data.consent.training is True
    records = {r.id: r for r in data.records}
    assert set(records) == {answer.interaction_id, pixels.interaction_id, theirs.id, by_number.id}
    assert all(isinstance(r, m.RecordOut) and isinstance(r.input_, m.ImageInput) for r in records.values())
    shown = Image.open(io.BytesIO(base64.b64decode(records[theirs.id].input_.image)))
    assert shown.size == (28, 28)  # the canonical item, whichever form it was sent in
    assert [(f.label, f.rating) for f in records[answer.interaction_id].feedback] == [("3", None)]
    assert isinstance(records[answer.interaction_id].feedback[0], m.FeedbackOut)
    assert records[answer.interaction_id].model_version == "1"
    assert (records[theirs.id].model_version, records[by_number.id].model_version) == ("gpt-4o-2024-08-06", "1")
    assert records[theirs.id].scores.additional_properties == {"7": 0.75, "1": 0.25}
    assert records[by_number.id].scores is None
    assert set(api.seen) == {"POST /v1/predict 200", "POST /v1/interactions 201", "POST /v1/feedback 201",
                             "GET /v1/users/{user_id}/data 200"}


def test_refusals_come_back_as_the_generated_error_model(generated, api, splits):
    m = generated.models
    predict = generated.api("predict.predict")
    bad = predict.sync(client=api.client, body=m.PredictIn(user_id="gen-user", input_=m.TextInput(text="seven")))
    assert isinstance(bad, m.ErrorOut) and bad.error == "invalid_input"  # a text input to an image workspace
    unknown = generated.api("users.export_user_data").sync(client=api.client, user_id="nobody")
    assert isinstance(unknown, m.ErrorOut) and unknown.error == "not_found"
    api.client.get_httpx_client().headers["Authorization"] = "Bearer wrong-key-for-tests-0123456789"
    refused = predict.sync(client=api.client, body=m.PredictIn(
        user_id="gen-user", input_=m.ImageInput(image=_digit(splits, 0))))
    assert isinstance(refused, m.ErrorOut) and refused.error == "http_error"
    assert api.seen == ["POST /v1/predict 422", "GET /v1/users/{user_id}/data 404", "POST /v1/predict 401"]


def test_keyed_operations_need_an_authenticated_client(generated):
    """The document's security requirements reach the generated signatures: no key, no call."""
    import inspect

    keyed = inspect.signature(generated.api("predict.predict").sync).parameters["client"].annotation
    public = inspect.signature(generated.api("health.healthz").sync).parameters["client"].annotation
    assert "AuthenticatedClient" in str(keyed) and "| Client" not in str(keyed)
    assert "Client" in str(public).replace("AuthenticatedClient", "")
