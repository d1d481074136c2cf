"""The web app end to end, in a real browser: Debian's Chromium driven by Playwright against ``datawheel serve``.

One server, one workspace, the three faces in the order a day on the wheel goes: a visitor draws a digit,
corrects the answer, sees it in My data and deletes it; an operator signs in, runs a cycle and watches it,
sees the accuracy chart gain a point, promotes and rolls back, labels a queued item by keyboard; the
community page ranks a helpful simulated contributor above a careless one and never shows one who
withdrew consent. A finger draws on a phone's canvas too. A text-generation workspace's Try-it page is a chat:
a question typed and sent with Enter, its answer rated, corrected and chosen from two, all counted in My data.
Screenshots go to ``build/screenshots/`` (their paths are printed).

Needs the system ``chromium`` (``make test`` installs it when it can); without it the tests skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e '.[dev]'")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="the system Chromium is missing: apt-get install -y chromium "
                                                         "(make test does it when run as root)")

SHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
APP_KEY = "e2e-app-key-0123456789abcdef"
ADMIN_KEY = "e2e-admin-key-0123456789abcdef"
ANNOTATOR_KEY = "e2e-annotator-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(root: Path) -> Iterator[str]:
    """``datawheel serve`` on a free port for the workspace at ``root``, until the block ends; yields its URL."""
    port = _free_port()
    env = {**os.environ, "DATAWHEEL_APP_KEY": APP_KEY, "DATAWHEEL_ADMIN_KEY": ADMIN_KEY,
           "DATAWHEEL_ANNOTATOR_KEY": ANNOTATOR_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "datawheel.cli", "serve", str(root), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://localhost:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("datawheel serve did not come up")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, template_ws: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("e2e") / "ws"
    shutil.copytree(template_ws, root)
    with _serve(root) as base:
        yield base, root


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A text-generation workspace (a tiny random Llama: its answers are noise) served like the digits one."""
    pytest.importorskip("peft")
    from test_web_chat import build_chat_workspace

    with _serve(build_chat_workspace(tmp_path_factory.mktemp("e2e-chat"))) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    yield pg
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "TypeError" in p], problems


def shot(pg, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _simulate(base: str, pool: list[tuple[np.ndarray, str]]) -> None:
    """A helpful contributor (right labels), a careless one (random labels), one who withdraws consent."""
    rng = np.random.default_rng(7)
    headers = {"Authorization": f"Bearer {APP_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
        for image, truth in pool[:80]:
            for user, label in (("sim-helpful", truth), ("sim-careless", str(rng.integers(0, 10))),
                                ("sim-private", truth)):
                r = api.post("/v1/contributions", json={"user_id": user, "input": {"pixels": image.tolist()},
                                                        "label": label, "consent": {"training": True}})
                assert r.status_code == 201, r.text
        assert api.put("/v1/users/sim-private/consent", json={"training": False}).status_code == 200


def _draw_one(pg) -> None:
    box = pg.locator("#canvas").bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15
    pg.mouse.move(x - 20, top + 20)
    pg.mouse.down()
    pg.mouse.move(x, top, steps=5)
    pg.mouse.move(x, box["y"] + box["height"] * 0.85, steps=15)
    pg.mouse.up()


def test_try_it_correct_my_data_and_delete(page, server):
    base, _ = server
    page.goto(base + "/")
    page.locator("#consent").check()
    expect(page.locator("#status")).to_have_text("Training consent is on.")
    _draw_one(page)
    page.click("#predict-image")
    page.wait_for_selector("#result:not([hidden])")
    assert page.locator("#answer").inner_text() in [str(d) for d in range(10)]
    assert page.locator("#scores li").count() == 3
    assert page.locator("#answer-version").inner_text() == "v1"
    page.select_option("#right-label", "7")
    page.click("#send-correction")
    expect(page.locator("#status")).to_contain_text("Thank you")
    page.click("#show-data")
    expect(page.locator("#my-summary")).to_have_attribute("data-corrections", "1")
    assert page.locator("#my-records li").count() == 1
    shot(page, "1-try-it-corrected")
    page.click("#delete-data")
    page.click("#confirm-yes")
    page.wait_for_selector("#receipt:not([hidden])")
    text = page.locator("#receipt-text").inner_text()
    assert "1 records and 1 feedback deleted" in text
    shot(page, "2-try-it-erasure-receipt")


def test_try_it_fits_a_phone_and_speaks_chinese(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="zh-CN", has_touch=True)
    pg = context.new_page()
    pg.goto(base + "/")
    pg.wait_for_selector("#panel-image-classification:not([hidden])")
    assert pg.locator("h1").inner_text() == "试用模型"
    assert pg.evaluate("document.documentElement.scrollWidth") <= 375
    shot(pg, "3-try-it-phone-zh")
    pg.click("#lang-switch")
    assert pg.locator("h1").inner_text() == "Try the model"
    context.close()


def _touch_stroke(pg, points: list[tuple[float, float]]) -> None:
    """One finger drawn through ``points`` (page coordinates), as a phone's touchscreen sends it.

    Playwright's ``page.touchscreen`` only taps; a stroke goes through Chromium's own touch input (DevTools
    ``Input.dispatchTouchEvent``), so the page sees the same pointer events a finger makes.
    """
    cdp = pg.context.new_cdp_session(pg)
    (x, y), rest = points[0], points[1:]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for x, y in rest:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def _ink(pg) -> int:
    """How many canvas pixels the drawing has lit (the canvas starts black)."""
    return int(pg.evaluate("""() => {
      const c = document.getElementById("canvas");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 128) lit++;
      return lit;
    }"""))


def test_a_finger_draws_on_the_canvas(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="en-US", has_touch=True,
                                  is_mobile=True)
    pg = context.new_page()
    pg.goto(base + "/")
    pg.wait_for_selector("#panel-image-classification:not([hidden])")
    box = pg.locator("#canvas").bounding_box()
    pg.touchscreen.tap(box["x"] + 5, box["y"] + 5)  # a tap is no drawing: nothing moved
    pg.click("#predict-image")
    expect(pg.locator("#status")).to_have_text("Draw or upload something first.")
    assert _ink(pg) == 0
    box = pg.locator("#canvas").bounding_box()  # where it is now: the click may have scrolled the page
    x = box["x"] + box["width"] / 2
    _touch_stroke(pg, [(x, box["y"] + box["height"] * (0.15 + 0.7 * i / 20)) for i in range(21)])
    assert _ink(pg) > 1000, "the finger's stroke left no ink"
    pg.click("#predict-image")
    pg.wait_for_selector("#result:not([hidden])")
    assert pg.locator("#answer").inner_text() in [str(d) for d in range(10)]
    context.close()


def _accuracy_points(pg) -> int:
    return int(pg.locator("#chart-accuracy-box g.pt").count())


def test_console_cycle_registry_and_queue(page, server, splits):
    base, _ = server
    _simulate(base, splits.pool)
    page.goto(base + "/admin")
    page.fill("#key", ADMIN_KEY)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#console:not([hidden])")
    page.wait_for_selector("#chart-accuracy-box svg")
    before = _accuracy_points(page)
    assert page.locator("#chain").inner_text().startswith("Verified")
    page.click("#run-cycle")
    page.wait_for_selector("#cycle-progress:not([hidden])")
    seen = {page.locator("#cycle-stage").get_attribute("data-stage")}
    deadline = time.time() + 600
    while time.time() < deadline and "done" not in seen:
        seen.add(page.locator("#cycle-stage").get_attribute("data-stage"))
        time.sleep(0.3)
    assert "done" in seen, seen
    assert seen & {"curating", "training", "registering"}, f"no live progress was shown: {seen}"
    expect(page.locator("#chart-accuracy-box g.pt")).to_have_count(before + 1)
    shot(page, "4-console-after-cycle")
    _promote_and_roll_back(page)
    _label_by_keyboard(page)


def _champion(pg) -> str:
    return str(pg.locator("#models tbody tr.you").get_attribute("data-version"))


def _promote_and_roll_back(pg) -> None:
    start = _champion(pg)
    other = "1" if start != "1" else "2"
    pg.click(f"#models button.promote[data-version='{other}']")
    expect(pg.locator("#models tbody tr.you")).to_have_attribute("data-version", other)
    shot(pg, "5-console-promoted")
    pg.click("#rollback")
    expect(pg.locator("#models tbody tr.you")).to_have_attribute("data-version", start)


def _label_by_keyboard(pg) -> None:
    pg.wait_for_selector("#queue-item img")
    first = pg.locator("#queue-item").get_attribute("data-item-id")
    assert first, "the cycle queued nothing to label"
    open_before = pg.locator("#queue-open").inner_text()
    pg.keyboard.press("3")
    expect(pg.locator("#queue-open")).not_to_have_text(open_before)
    expect(pg.locator("#status")).to_contain_text("3 ✓")
    shot(pg, "6-console-queue-labelled")


def test_community_ranks_helpful_above_careless(page, server):
    from datawheel.web.names import display_name
    from datawheel.workspace import Workspace

    base, root = server
    ws = Workspace.open(root)
    names = {u: display_name(ws.user_ref(u)) for u in ("sim-helpful", "sim-careless", "sim-private")}
    ws.store.close()
    page.goto(base + "/community")
    page.wait_for_selector("#ranking tbody tr")
    ranked = page.locator("#ranking tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names["sim-helpful"] in ranked and names["sim-careless"] in ranked, ranked
    assert ranked.index(names["sim-helpful"]) < ranked.index(names["sim-careless"])
    assert names["sim-private"] not in ranked  # withdrew consent: never shown
    assert "knn-shapley" in page.locator("#method-name").inner_text()
    assert " s." in page.locator("#method-cost").inner_text()
    shot(page, "7-community")


def _send(pg, text: str) -> None:
    """Type a message and press Enter, then wait for the answer it gets."""
    answers = pg.locator("#chat-log .msg.assistant").count()
    pg.fill("#chat-input", text)
    pg.locator("#chat-input").press("Enter")
    expect(pg.locator("#chat-log .msg.assistant")).to_have_count(answers + 1)


def test_chat_answer_correct_it_and_see_it_in_my_data(page, chat_server):
    page.goto(chat_server + "/")
    page.wait_for_selector("#panel-text-generation:not([hidden])")
    assert page.locator("#panel-image-classification").is_hidden() and page.locator("#result").is_hidden()
    page.locator("#consent").check()
    expect(page.locator("#status")).to_have_text("Training consent is on.")
    box = page.locator("#chat-input")
    box.type("What colour is item 3?")
    box.press("Shift+Enter")
    box.type("One word, please.")
    assert box.input_value() == "What colour is item 3?\nOne word, please."  # Shift+Enter: a new line, not sent
    assert page.locator("#chat-log .msg").count() == 0
    box.press("Enter")
    answer = page.locator("#chat-log .msg.assistant").first
    expect(answer).to_be_visible()
    expect(page.locator("#chat-log .msg.user .bubble")).to_have_text("What colour is item 3?\nOne word, please.")
    version = page.request.get(chat_server + "/app/session").json()["champion_version"]
    expect(answer.locator(".who")).to_have_text(f"Model v{version}")
    answer.locator("button.thumb-up").click()
    expect(page.locator("#status")).to_contain_text("Thank you")
    expect(answer.locator("button.thumb-up")).to_have_attribute("aria-pressed", "true")
    answer.locator("button.edit").click()
    answer.locator("textarea.correction").fill("Green.")
    answer.locator("button.send-correction").click()
    expect(answer.locator(".bubble")).to_have_text("Green.")
    expect(answer.locator(".was")).to_be_visible()
    page.locator("#two-answers").check()
    _send(page, "And item 4?")
    pair = page.locator("#chat-log .msg.assistant.pair")
    expect(pair.locator(".choice")).to_have_count(2)
    pair.locator(".choice[data-index='1'] button.choose").click()
    expect(pair.locator(".choice.chosen")).to_have_attribute("data-index", "1")
    page.click("#show-data")
    expect(page.locator("#my-summary")).to_have_attribute("data-corrections", "1")
    expect(page.locator("#my-records li")).to_have_count(2)
    assert "choices between two answers: 1" in page.locator("#my-summary").inner_text()
    mine = page.request.get(chat_server + "/app/my-data").json()
    first, second = mine["records"]
    assert [f["correction"] for f in first["feedback"]] == [None, "Green."] and len(second["answers"]) == 2
    # the conversation went on from the corrected answer, not the model's
    assert second["input"]["messages"][1] == {"role": "assistant", "content": "Green."}
    shot(page, "8-try-it-chat")
    page.click("#lang-switch")  # the answers' own buttons switch language with the page
    expect(page.locator("#chat-title")).to_have_text("和模型对话")
    expect(answer.locator("button.thumb-up")).to_have_text("✓\u00a0好回答")
    expect(answer.locator(".who")).to_have_text(f"模型 v{version}")
    page.click("#lang-switch")
    page.click("#delete-data")
    page.click("#confirm-yes")
    expect(page.locator("#receipt-text")).to_contain_text("2 records and 3 feedback deleted")
    expect(page.locator("#chat-log .msg")).to_have_count(0)  # erased answers can take no more feedback
