"""The Try-it chat without a browser: a visitor's conversation with a text-generation champion, their thumbs,
corrections and choices, what "My data" shows of it, and what bad or foreign requests get.

The workspace holds a tiny random Llama (``llm_fixtures.py``): its answers are noise, which is all these
tests need; they check that what was answered is what was stored, shown and erased.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import make_client
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace
from llm_fixtures import build_tiny_llama

pytest.importorskip("peft")

BASE = "https://testserver"  # the cookies are Secure: the client sends them over HTTPS only
FAST = {"epochs": 1, "lr": 5e-3, "max_new_tokens": 6, "lora_r": 4, "lora_alpha": 8, "threads": 1,
        "eval_batch_size": 32}
COLORS = ["red", "blue", "green", "black", "white"]


def build_chat_workspace(folder: Path) -> Path:
    """A text-generation workspace on a tiny random Llama under ``folder`` (seconds); returns its root.

    Also used by the browser test (``test_web_e2e.py``), which serves one with ``datawheel serve``.
    """
    base = build_tiny_llama(folder / "llama")
    seed, golden = folder / "seed.jsonl", folder / "golden.jsonl"
    seed.write_text("".join(json.dumps({"prompt": f"item {i} color?", "response": COLORS[i % 5]}) + "\n"
                            for i in range(12)), encoding="utf-8")
    golden.write_text("".join(json.dumps({"prompt": f"golden {i} color?", "response": COLORS[i % 5]}) + "\n"
                              for i in range(8)), encoding="utf-8")
    ws = init_workspace(folder / "ws", task="text-generation", labels=(), seed_data=seed, eval_data=golden,
                        generation_options={"base_model": str(base), **FAST})
    ws.store.close()
    return folder / "ws"


@pytest.fixture(scope="session")
def chat_web_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session and copied per test."""
    return build_chat_workspace(tmp_path_factory.mktemp("web-chat"))


@pytest.fixture
def chat_ws(tmp_path: Path, chat_web_template: Path) -> Iterator[Workspace]:
    root = tmp_path / "ws"
    shutil.copytree(chat_web_template, root)
    ws = Workspace.open(root)
    yield ws
    ws.store.close()


def _browser(ws: Workspace) -> TestClient:
    client = make_client(ws)
    client.base_url = client._merge_url(BASE)
    return client


@pytest.fixture
def web(chat_ws: Workspace) -> Iterator[TestClient]:
    with _browser(chat_ws) as client:
        yield client


def _session(client: TestClient) -> dict:
    session = client.get("/app/session").json()
    client.headers["X-CSRF-Token"] = session["csrf"]
    return session


def _say(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_answer_is_stored_then_thumbs_and_correction_show_in_my_data(web, chat_ws):
    session = _session(web)
    assert session["task"] == "text-generation" and session["labels"] == []
    assert web.put("/app/consent", json={"training": True}).status_code == 200
    r = web.post("/app/chat", json={"messages": _say("item 3 color?")})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model_version"] == chat_ws.store.aliases()["champion"] == session["champion_version"]
    assert len(answer["answers"]) == 1 and answer["finish_reasons"][0] in ("stop", "length")
    stored = [chat_ws.screen().clean_text(a, "answer") for a in answer["answers"]]  # as the screen keeps them
    assert chat_ws.store.completions_of(answer["interaction_id"]) == stored
    rid = answer["interaction_id"]
    assert web.post("/app/chat/feedback", json={"interaction_id": rid, "rating": -1}).status_code == 201
    r = web.post("/app/chat/feedback", json={"interaction_id": rid,
                                             "correction": "green; write to jane.doe@example.com"})
    assert r.status_code == 201, r.text
    mine = web.get("/app/my-data").json()
    assert mine["summary"] | {"snapshots": [], "models": []} == {
        "interactions": 1, "contributions": 0, "corrections": 1, "choices": 0, "ratings": 1, "snapshots": [],
        "models": []}
    [record] = mine["records"]
    assert record["input"] == {"messages": _say("item 3 color?")} and record["answers"] == stored
    assert record["model_version"] == str(answer["model_version"]) and record["consent_training"] is True
    corrected = [f["correction"] for f in record["feedback"] if f["correction"]]
    assert len(corrected) == 1 and corrected[0].startswith("green") and "jane.doe" not in corrected[0]
    assert "user_id" not in mine
    download = web.get("/app/my-data?download=true")
    assert "attachment" in download.headers["content-disposition"] and '"answers"' in download.text


def test_a_conversation_continues_and_erasure_takes_its_answers(web, chat_ws):
    _session(web)
    first = web.post("/app/chat", json={"messages": _say("item 1 color?")}).json()
    turns = [*_say("item 1 color?"), {"role": "assistant", "content": "blue"}, *_say("and item 2?")]
    second = web.post("/app/chat", json={"messages": turns})
    assert second.status_code == 200, second.text
    records = web.get("/app/my-data").json()["records"]
    assert [len(r["input"]["messages"]) for r in records] == [1, 3]
    assert records[1]["input"]["messages"][1] == {"role": "assistant", "content": "blue"}
    gone = web.delete("/app/my-data").json()
    assert gone["receipt"]["records_deleted"] == 2
    assert chat_ws.store.completions_of(first["interaction_id"]) == [] and chat_ws.store.exchanges() == []


def test_two_answers_and_the_better_one_chosen(web, chat_ws):
    _session(web)
    pair = web.post("/app/chat", json={"messages": _say("item 4 color?"), "n": 2}).json()
    assert len(pair["answers"]) == 2
    single = web.post("/app/chat", json={"messages": _say("item 5 color?")}).json()
    r = web.post("/app/chat/feedback", json={"interaction_id": single["interaction_id"], "chosen": 1})
    assert r.status_code == 422 and r.json()["detail"].startswith("chosen:")  # one answer: nothing to choose from
    r = web.post("/app/chat/feedback", json={"interaction_id": pair["interaction_id"], "chosen": 1})
    assert r.status_code == 201, r.text
    [exchange] = [e for e in chat_ws.store.exchanges() if e.record_id == pair["interaction_id"]]
    # stored as the screen cleans them (NFKC first: the tiny random model can write a ligature such as "ĳ")
    screen = chat_ws.screen()
    assert exchange.answers == tuple(screen.clean_text(a, "answer") for a in pair["answers"])
    assert exchange.feedback[0].chosen == 1
    mine = web.get("/app/my-data").json()
    assert mine["summary"]["choices"] == 1 and mine["summary"]["corrections"] == 0
    assert [f["chosen"] for r in mine["records"] for f in r["feedback"]] == [1]


def test_bad_chat_input_is_a_4xx_naming_the_field(web):
    _session(web)
    rid = web.post("/app/chat", json={"messages": _say("item 2 color?")}).json()["interaction_id"]
    cases = [
        ("/app/chat", {"messages": []}, "messages"),
        ("/app/chat", {"messages": _say("hi"), "n": 3}, "n"),
        ("/app/chat", {"messages": _say("hi"), "n": True}, "n"),
        ("/app/chat", {"messages": [{"role": "assistant", "content": "hello"}]}, "messages"),
        ("/app/chat", {"messages": _say("word " * 3000)}, "messages"),
        ("/app/chat", {"messages": _say("hi"), "temperature": 2}, "temperature"),
        ("/app/chat", {"messages": _say("?!")}, "input"),
        ("/app/chat/feedback", {"interaction_id": rid}, "body"),
        ("/app/chat/feedback", {"interaction_id": rid, "rating": 0}, "rating"),
        ("/app/chat/feedback", {"interaction_id": rid, "rating": True}, "rating"),
        ("/app/chat/feedback", {"interaction_id": rid, "chosen": 2}, "chosen"),
        ("/app/chat/feedback", {"interaction_id": rid, "correction": ""}, "correction"),
        ("/app/chat/feedback", {"interaction_id": rid, "label": "red"}, "label"),
        ("/app/chat/feedback", {"interaction_id": "0" * 32, "rating": 1}, "interaction_id"),
        ("/app/predict", {"input": {"text": "hi"}}, "/app/chat"),
        ("/app/feedback", {"interaction_id": rid, "rating": 1}, "/app/chat/feedback"),
    ]
    for path, body, field in cases:
        r = web.post(path, json=body)
        assert 400 <= r.status_code < 500 and field in r.json()["detail"], (path, body, r.status_code, r.text)
    assert "hello" not in web.post("/app/chat", json=cases[3][1]).text  # the value sent is never echoed


def test_chat_needs_the_csrf_token_and_answers_only_its_own_visitor(web, chat_ws):
    body = {"messages": _say("item 6 color?")}
    assert web.post("/app/chat", json=body).status_code == 403  # no token yet
    _session(web)
    assert web.post("/app/chat", json=body, headers={"Origin": "https://evil.example"}).status_code == 403
    rid = web.post("/app/chat", json=body).json()["interaction_id"]
    assert web.post("/app/chat/feedback", json={"interaction_id": rid, "rating": 1},
                    headers={"X-CSRF-Token": "forged"}).status_code == 403
    with _browser(chat_ws) as other:
        _session(other)
        r = other.post("/app/chat/feedback", json={"interaction_id": rid, "rating": 1})
        assert r.status_code == 404 and r.json()["detail"].startswith("interaction_id:")
        assert other.get("/app/my-data").json()["records"] == []


def test_a_classifier_workspace_refuses_the_chat(ws):
    with _browser(ws) as client:
        _session(client)
        r = client.post("/app/chat", json={"messages": _say("hi")})
        assert r.status_code == 409 and "/app/predict" in r.json()["detail"]
        r = client.post("/app/chat/feedback", json={"interaction_id": "0" * 32, "rating": 1})
        assert r.status_code == 409
