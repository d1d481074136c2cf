"""The web app without a browser: cookies, CSRF, headers, the visitor's and the operator's JSON routes.

The browser tests (``test_web_e2e.py``) drive the same routes through the pages; these pin the rules a page
cannot show: what a forged or cross-site request gets, which cookie flags are set, that no key ever reaches
the browser, and that bad input is a 4xx naming the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import ADMIN_KEY, APP_KEY, make_client
from datawheel.api.app import create_app
from datawheel.settings import Settings
from datawheel.web.app import STATIC

BASE = "https://testserver"  # the cookies are Secure: the client sends them over HTTPS only
ANNOTATOR_KEY = "annotator-key-for-tests-0123456789"


@pytest.fixture
def web(ws):
    with make_client(ws, annotator_key=ANNOTATOR_KEY) as client:
        client.base_url = client._merge_url(BASE)
        yield client


def _session(client: TestClient) -> dict:
    session = client.get("/app/session").json()
    client.headers["X-CSRF-Token"] = session["csrf"]
    return session


def _login(client: TestClient, key: str = ADMIN_KEY) -> None:
    _session(client)
    assert client.post("/app/console/login", json={"key": key}).status_code == 200


def test_pages_are_served_with_security_headers_and_an_id_cookie(web):
    for path in ("/", "/admin", "/community", "/static/style.css", "/static/try.js", "/app/session", "/app/nope"):
        r = web.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path


def test_the_id_cookie_is_http_only_secure_and_strict(ws):
    with make_client(ws) as client:
        r = client.get(BASE + "/")
    header = r.headers["set-cookie"].lower()
    assert "dw_uid=" in header and "httponly" in header and "secure" in header and "samesite=strict" in header


def test_no_key_reaches_the_browser(web):
    _login(web)
    bodies = [web.get(p).text for p in ("/", "/admin", "/community", "/app/session", "/app/console/whoami")]
    bodies += [p.read_text(encoding="utf-8") for p in STATIC.iterdir()]
    bodies += [str(web.cookies.get(name)) for name in web.cookies]
    assert not any(APP_KEY in b or ADMIN_KEY in b for b in bodies)


def test_state_changes_need_the_csrf_token_and_the_same_origin(web):
    image = [[0] * 8 for _ in range(8)]
    image[3][2:6] = [255] * 4
    body = {"input": {"pixels": image}}
    assert web.post("/app/predict", json=body).status_code == 403  # no token yet
    _session(web)
    assert web.post("/app/predict", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert web.post("/app/predict", json=body, headers={"Origin": "https://evil.example"}).status_code == 403
    assert web.post("/app/predict", json=body, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert web.post("/app/predict", json=body).status_code == 200


def test_try_correct_see_it_in_my_data_then_delete(web, splits):
    first = _session(web)
    assert web.put("/app/consent", json={"training": True}).json()["consent"]["training"] is True
    answer = web.post("/app/predict", json={"input": {"pixels": splits.pool[0][0].tolist()}}).json()
    assert answer["model_version"] == 1 and len(answer["top"]) == 3
    assert web.post("/app/feedback", json={"interaction_id": answer["interaction_id"], "label": "7"}).status_code == 201
    mine = web.get("/app/my-data").json()
    assert mine["summary"]["corrections"] == 1 and mine["records"][0]["feedback"][0]["label"] == "7"
    assert "user_id" not in mine and mine["you"] == first["you"]
    download = web.get("/app/my-data?download=true")
    assert "attachment" in download.headers["content-disposition"]
    gone = web.delete("/app/my-data").json()
    assert gone["receipt"]["records_deleted"] == 1 and gone["receipt"]["feedback_deleted"] == 1
    web.headers["X-CSRF-Token"] = gone["csrf"]
    second = web.get("/app/session").json()
    assert second["you"] != first["you"]  # a new pseudonymous id: nothing links the browser to the erased one
    assert web.get("/app/my-data").json()["records"] == []


def test_bad_input_is_a_4xx_naming_the_field(web):
    _session(web)
    cases = [
        ("post", "/app/predict", {"input": {"pixels": [[1, "x"]]}}, "input.pixels[0][1]"),
        ("post", "/app/predict", {"input": {"image": "not base64!"}}, "input.image"),
        ("post", "/app/predict", {}, "input"),
        ("post", "/app/feedback", {"interaction_id": "0" * 32, "label": "nope"}, "label"),
        ("post", "/app/feedback", {"interaction_id": "0" * 32, "label": "3"}, "interaction_id"),
        ("post", "/app/feedback", {"interaction_id": "0" * 32}, "body"),
        ("put", "/app/consent", {"training": "yes"}, "training"),
        ("post", "/app/console/login", {"key": "wrong"}, "key"),
        ("delete", "/app/my-data", None, "user_id"),  # nothing held yet
    ]
    for method, path, body, field in cases:
        r = web.request(method, path, json=body)
        assert 400 <= r.status_code < 500 and field in r.json()["detail"], (path, r.status_code, r.text)


def test_console_roles_and_key_rotation(web, ws):
    _session(web)
    assert web.get("/app/console/overview").status_code == 401
    assert web.post("/app/console/login", json={"key": APP_KEY}).status_code == 401  # the app key opens no console
    _login(web, ANNOTATOR_KEY)
    assert web.get("/app/console/queue").status_code == 200
    assert web.get("/app/console/overview").status_code == 403
    assert web.post("/app/console/cycles", json={}).status_code == 403
    _login(web, ADMIN_KEY)
    assert web.get("/app/console/whoami").json() == {"role": "admin"}
    for path in ("/app/console/overview", "/app/console/models", "/app/console/cycles", "/app/console/trials",
                 "/app/console/audit", "/app/console/models/1/card"):
        assert web.get(path).status_code == 200, path
    assert web.get("/app/console/audit").json()["chain"]["ok"] is True
    rotated = create_app(ws, Settings(app_key=APP_KEY, admin_key="a-rotated-admin-key-0123456789",
                                      cycle_in_subprocess=False))
    with TestClient(rotated, base_url=BASE, cookies=web.cookies) as after:
        assert after.get("/app/console/whoami").status_code == 401
    web.post("/app/console/logout")
    assert web.get("/app/console/whoami").status_code == 401


def test_web_routes_stay_out_of_the_api_contract(web):
    paths = web.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/app") or p in ("/", "/admin", "/community")]


def test_the_first_page_is_under_200_kb():
    first = ["index.html", "style.css", "common.js", "chat.js", "try.js"]
    size = sum((STATIC / name).stat().st_size for name in first)
    print(f"first page: {size} bytes ({', '.join(first)})")
    assert size < 200_000


def test_package_data_ships_the_static_files():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert "web/static/*" in pyproject


def test_a_visitor_sees_what_their_corrections_were_worth(ws, splits):
    """Corrections with consent are valued by the next cycle; a visitor without consent is never ranked."""
    with make_client(ws) as helpful, make_client(ws) as private:
        for client in (helpful, private):
            client.base_url = client._merge_url(BASE)
            _session(client)
        assert helpful.put("/app/consent", json={"training": True}).status_code == 200
        for image, truth in splits.pool[:40]:
            for client in (helpful, private):
                answer = client.post("/app/predict", json={"input": {"pixels": image.tolist()}}).json()
                assert client.post("/app/feedback", json={"interaction_id": answer["interaction_id"],
                                                          "label": truth}).status_code == 201
        _login(helpful)
        assert helpful.post("/app/console/cycles", json={}).status_code == 202
        helpful.app.state.services.runner.join(300)
        assert helpful.get("/app/console/cycles").json()["cycles"][0]["status"] == "done"
        me = helpful.get("/app/community/me").json()
        assert me["valued"] and me["corrections"] == 40 and me["rank"] == 1 and me["models"]
        assert me["best_class"] in ws.labels and me["best_class_points"] > 0
        ranking = private.get("/app/community").json()
        assert [c["name"] for c in ranking["contributors"]] == [me["you"]]
        assert not any(c["you"] for c in ranking["contributors"])
        assert ranking["valuation"]["method"] == "knn-shapley" and ranking["valuation"]["seconds"] >= 0
        assert private.get("/app/community/me").json()["valued"] is False
        overview = helpful.get("/app/console/overview").json()
        assert len(overview["accuracy"]) == 2 and overview["charts"]["accuracy"].count('class="pt ') == 2


def _strings() -> dict[str, set[str]]:
    import re

    source = (STATIC / "common.js").read_text(encoding="utf-8")
    en, zh = source.split("\n  zh: {", 1)
    keys = re.compile(r'"([a-zA-Z0-9]+\.[a-zA-Z0-9]+|error)":')
    return {"en": set(keys.findall(en)), "zh": set(keys.findall(zh))}


def test_every_ui_string_exists_in_english_and_chinese():
    import re

    strings = _strings()
    assert strings["en"] == strings["zh"], strings["en"] ^ strings["zh"]
    used = set()
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="([^"]+)"', text))
        used |= set(re.findall(r'\bt\("([^"]+)"', text))
        used |= set(re.findall(r'"data-i18n": "([^"]+)"', text))  # set on elements a script builds
        used |= set(re.findall(r'\bchat(?:Button|Who)\("([^"]+)"', text))  # chat.js's helpers take a key
    assert used - strings["en"] == set(), "missing translations"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_text_colours_meet_wcag_aa_on_white_and_the_page_background():
    from datawheel.web import charts

    colours = ["#1f2328", "#57606a", "#1f5fa8", "#b42318", "#1a7f37", "#0a58ca", charts.ORANGE, charts.INK]
    for background in ("#ffffff", "#f6f8fa", "#fff8c5", "#eef4fb"):  # eef4fb: your chat messages
        for colour in colours:
            light, dark = sorted((_luminance(background), _luminance(colour)), reverse=True)
            assert (light + 0.05) / (dark + 0.05) >= 4.5, (colour, background)
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    assert all(c in css for c in colours[:6])


def test_deleting_my_data_follows_the_erasure_policy(ws, splits):
    """With ``[erasure] champion = "retrain"``, a visitor whose data trained the champion is told a replacement
    without it is being trained, and that retrain-without cycle runs, as for the API's erasure."""
    from sqlalchemy import select

    from datawheel.store import tables
    from test_cycle_skip import contribute, trained
    from test_erasure_policy import with_policy

    ws = with_policy(ws, "retrain")
    try:
        with make_client(ws) as web:
            web.base_url = web._merge_url(BASE)
            _session(web)
            web.put("/app/consent", json={"training": True})
            web.post("/app/predict", json={"input": {"pixels": splits.pool[0][0].tolist()}})
            with ws.store.engine.connect() as conn:  # the visitor's pseudonymous id, as the server knows it
                (uid,) = set(conn.execute(select(tables.records.c.user_id)).scalars())
            contribute(ws, splits.pool, range(1, 31), uid)
            contribute(ws, splits.pool, range(31, 61), "bob")
            champion = trained(ws)["candidate_version"]
            receipt = web.delete("/app/my-data").json()["receipt"]
            assert receipt["model_versions_trained_on_user_data"] == [champion]
            assert receipt["replacement_training"] is True and "user_id" not in receipt
            web.app.state.services.runner.join(120)
        forget = ws.store.list_cycles()[-1]
        assert forget["trigger"] == "forget" and forget["status"] == "done", forget["error"]
        assert forget["report"]["replaces"] == champion
    finally:
        ws.store.close()
