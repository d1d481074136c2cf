"""The text-generation wheel on a tiny random Llama: init, OpenAI-style serving, feedback, curation, a cycle,
erasure. Mechanics only; what the real base model learns is measured by benchmarks/llm_flywheel.py and the slow
test at the end."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ADMIN, APP, APP_KEY, make_client
from datawheel.artifacts import AnswerFeedback, Exchange, LabelledSet
from datawheel.stages.curate_chat import curate_chat
from datawheel.tasks.chat import TextGeneration
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace
from llm_fixtures import build_tiny_llama

pytest.importorskip("peft")

COLORS = ["red", "blue", "green", "black", "white"]
FAST = {"epochs": 1, "lr": 5e-3, "max_new_tokens": 6, "lora_r": 4, "lora_alpha": 8, "threads": 1,
        "eval_batch_size": 32}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def chat_template_ws(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    data = tmp_path_factory.mktemp("chatdata")
    seed = _write(data / "seed.jsonl", [{"prompt": f"item {i} color?", "response": COLORS[i % 5]} for i in range(12)])
    golden = _write(data / "golden.jsonl", [
        {"messages": [{"role": "user", "content": f"golden {i} color?"}], "response": COLORS[i % 5],
         "metadata": {"lang": "en"}} for i in range(8)])
    root = tmp_path_factory.mktemp("chatws") / "ws"
    ws = init_workspace(root, task="text-generation", labels=(), seed_data=seed, eval_data=golden,
                        generation_options={"base_model": str(tiny_base), **FAST})
    ws.store.close()
    return root


@pytest.fixture
def chat_ws(tmp_path: Path, chat_template_ws: Path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(chat_template_ws, root)
    ws = Workspace.open(root)
    yield ws
    ws.store.close()


@pytest.fixture
def chat_client(chat_ws: Workspace):
    with make_client(chat_ws) as c:
        yield c


def _ask(client, user: str, text: str, **extra) -> dict:
    r = client.post("/v1/chat/completions", headers=APP, json={
        "messages": [{"role": "user", "content": text}], "user": user,
        "consent": {"training": True}, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_init_registers_base_and_tuned_and_lets_the_gate_choose(chat_ws: Workspace) -> None:
    models = chat_ws.store.list_models()
    assert [m["model_name"] for m in models] == ["base", "lora"]
    assert models[1]["train_info"]["base_sha256"] == models[0]["train_info"]["base_sha256"]
    assert chat_ws.store.aliases()["champion"] in (1, 2)
    assert (chat_ws.root / "models" / "v2" / "adapter_model.safetensors").is_file()
    card = (chat_ws.root / "models" / "v2.card.md").read_text()
    assert "golden exact" in card and "slice lang=en" in card
    assert models[1]["metrics"]["n"] == 8


def test_chat_completion_has_openai_shape_and_is_stored(chat_client, chat_ws: Workspace) -> None:
    out = _ask(chat_client, "u1", "item 3 color?", max_tokens=4)
    assert out["object"] == "chat.completion" and out["model"].startswith("datawheel-v")
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["choices"][0]["finish_reason"] in ("stop", "length")
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    assert out["usage"]["completion_tokens"] <= 4
    # stored as the screen keeps it (NFKC first: the tiny random model can write a ligature)
    answer = out["choices"][0]["message"]["content"]
    assert chat_ws.store.completions_of(out["id"]) == [chat_ws.screen().clean_text(answer, "answer")]


def test_two_answers_and_a_choice_between_them(chat_client, chat_ws: Workspace) -> None:
    out = _ask(chat_client, "u1", "item 4 color?", n=2, temperature=1.0, seed=3)
    assert [c["index"] for c in out["choices"]] == [0, 1]
    r = chat_client.post("/v1/feedback", headers=APP, json={"interaction_id": out["id"], "user_id": "u1",
                                                            "chosen": 1})
    assert r.status_code == 201, r.text
    [ex] = chat_ws.store.exchanges()
    assert ex.feedback[0].chosen == 1 and len(ex.answers) == 2


def test_feedback_on_generation_checks_its_fields(chat_client, chat_ws: Workspace) -> None:
    out = _ask(chat_client, "u1", "item 5 color?")
    post = lambda body: chat_client.post("/v1/feedback", headers=APP,  # noqa: E731
                                         json={"interaction_id": out["id"], "user_id": "u1", **body})
    assert post({"chosen": 1}).status_code == 422  # one answer only: nothing to choose between
    r = post({"label": "red"})
    assert r.status_code == 422 and r.json()["detail"].startswith("label:")
    assert post({}).status_code == 422
    r = post({"rating": -1, "correction": "red, mail me at jane.doe@example.com"})
    assert r.status_code == 201
    other = chat_client.post("/v1/feedback", headers=APP, json={"interaction_id": out["id"], "user_id": "u2",
                                                                "rating": 1})
    assert other.status_code == 404
    [ex] = chat_ws.store.exchanges()
    assert "jane.doe@example.com" not in ex.feedback[0].correction
    assert ex.feedback[0].rating == -1


def test_limits_and_wrong_task_are_client_errors(chat_client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "user": "u1"}
    r = chat_client.post("/v1/chat/completions", headers=APP, json={**body, "max_tokens": 10_000})
    assert r.status_code == 422 and "max_tokens" in r.json()["detail"]
    r = chat_client.post("/v1/chat/completions", headers=APP, json={**body, "messages": [
        {"role": "user", "content": "word " * 3000}]})
    assert r.status_code == 422 and "messages" in r.json()["detail"]
    r = chat_client.post("/v1/chat/completions", headers=APP, json={"messages": body["messages"]})
    assert r.status_code == 422 and "user" in r.text
    r = chat_client.post("/v1/chat/completions", headers=APP, json={**body, "stream": True, "n": 2})
    assert r.status_code == 422
    r = chat_client.post("/v1/chat/completions", headers=APP, json={**body, "messages": [
        {"role": "assistant", "content": "hello"}]})
    assert r.status_code == 422
    r = chat_client.post("/v1/predict", headers=APP, json={"user_id": "u1", "input": {"text": "x"}})
    assert r.status_code in (409, 422) and r.status_code < 500
    assert chat_client.post("/v1/chat/completions", json=body).status_code == 401


def test_classifier_workspace_refuses_chat(client) -> None:
    r = client.post("/v1/chat/completions", headers=APP, json={"messages": [{"role": "user", "content": "hi"}],
                                                               "user": "u1"})
    assert r.status_code == 409 and "text-generation" in r.json()["detail"]


def test_streamed_answer_is_sent_as_events_and_stored(chat_client, chat_ws: Workspace) -> None:
    with chat_client.stream("POST", "/v1/chat/completions", headers=APP, json={
            "messages": [{"role": "user", "content": "item 7 color?"}], "user": "u9", "stream": True,
            "max_tokens": 5, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length") and "usage" in chunks[-1]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip()
    assert chat_ws.store.completions_of(chunks[0]["id"]) == [chat_ws.screen().clean_text(text, "answer")]


def test_openai_client_talks_to_datawheel(chat_client) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=APP_KEY, http_client=chat_client)
    reply = client.chat.completions.create(model="datawheel", messages=[{"role": "user", "content": "item 1?"}],
                                           user="u-openai", max_tokens=3,
                                           extra_body={"consent": {"training": True}})
    assert reply.id and reply.choices[0].message.role == "assistant"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="datawheel", messages=[{"role": "user", "content": "x"}],
                                       user="u-openai", max_tokens=100_000)


# -- curation ------------------------------------------------------------------------------------------------


def _exchange(task: TextGeneration, rid: str, user: str, prompt: str, answer: str, *feedback: AnswerFeedback,
              answers: tuple[str, ...] | None = None) -> Exchange:
    conv = (("user", prompt),)
    from datetime import UTC, datetime

    return Exchange(rid, user, task.content_hash(conv), task.encode(conv), answers or (answer,), tuple(feedback),
                    True, True, datetime.now(UTC))


def _sets(task: TextGeneration, seed: list[tuple[str, str]], golden: list[tuple[str, str]]) -> tuple:
    def build(rows: list[tuple[str, str]]) -> LabelledSet:
        convs = [(("user", p),) for p, _ in rows]
        return LabelledSet([task.encode(c) for c in convs], [r for _, r in rows], [task.content_hash(c) for c in convs])
    return build(seed), build(golden)


def test_curation_prefers_reliable_majority_and_excludes_a_coordinated_group() -> None:
    task = TextGeneration()
    seed, golden = _sets(task, [("what is the date in iso format for march 3 2021", "2021-03-03")],
                         [("normalize the date: 4 july 2020", "2020-07-04")])
    exchanges = []
    n = 0
    for i in range(6):  # six prompts, each corrected by three honest users and two adversaries
        prompt = f"normalize the date number {i}: {i + 1} may 2022"
        right, wrong = f"2022-05-0{i + 1}", "1999-01-01"
        for u in ("h1", "h2", "h3"):
            exchanges.append(_exchange(task, f"r{n}", u, prompt, "?", AnswerFeedback(u, -1, right, None)))
            n += 1
        for u in ("a1", "a2"):
            exchanges.append(_exchange(task, f"r{n}", u, prompt, "?", AnswerFeedback(u, -1, wrong, None)))
            n += 1
    for u, ans in (("h1", "2020-07-04"), ("a1", "1999-01-01"), ("a2", "1999-01-01")):  # near a golden prompt
        exchanges.append(_exchange(task, f"r{n}", u, "normalize the date: 4 july 2020", "?",
                                   AnswerFeedback(u, None, ans, None)))
        n += 1
    for i in range(3):  # prompts only the adversaries corrected
        exchanges.append(_exchange(task, f"r{n}", "a1", f"adversary prompt {i} about dates", "?",
                                   AnswerFeedback("a1", None, "1999-01-01", None)))
        n += 1
    out = curate_chat(exchanges, seed, golden, task, min_reliability=0.5, max_answer_chars=1000)
    sft = [r for r in out.rows if r["kind"] == "sft"]
    assert sft and all(r["label"] != "1999-01-01" for r in sft)
    assert {"a1", "a2"} <= out.excluded and not {"h1", "h2", "h3"} & out.excluded
    assert all("4 july 2020" not in task.decode(r["input"])[-1][1] for r in out.rows)  # golden prompt: never
    reasons = {v.reason for v in out.verdicts if not v.accepted}
    assert {"in_golden_set", "unreliable_user"} <= reasons
    dpo = [r for r in out.rows if r["kind"] == "dpo"]
    assert dpo and all(r["label"].startswith("2022-05") and r["rejected"] == "?" for r in dpo)


def test_curation_builds_dpo_and_kto_from_choices_and_thumbs() -> None:
    task = TextGeneration()
    seed, golden = _sets(task, [("seed prompt", "seed answer")], [("golden prompt about cats", "cat")])
    exchanges = [
        _exchange(task, "c1", "u1", "say hello politely", "", AnswerFeedback("u1", None, None, 1),
                  answers=("hey", "Hello, nice to meet you")),
        _exchange(task, "t1", "u2", "name a fruit", "apple", AnswerFeedback("u2", 1, None, None)),
        _exchange(task, "t2", "u3", "name a fruit", "rock", AnswerFeedback("u3", -1, None, None)),
        _exchange(task, "z1", "u4", "请用中文回答：你好吗", "I am fine", AnswerFeedback("u4", 1, None, None)),
    ]
    out = curate_chat(exchanges, seed, golden, task, min_reliability=0.0, max_answer_chars=1000)
    rows = {(r["kind"], r["label"], r["rejected"], r["desirable"]) for r in out.rows}
    assert ("dpo", "Hello, nice to meet you", "hey", None) in rows
    assert ("dpo", "apple", "rock", None) in rows
    assert ("kto", "apple", None, True) in rows and ("kto", "rock", None, False) in rows
    assert ("sft", "apple", None, None) in rows
    verdict = {v.record_id: v.reason for v in out.verdicts}
    assert verdict["z1"] == "language_mismatch"  # an English answer to a Chinese prompt is never a target


# -- a cycle, exports and erasure ------------------------------------------------------------------------------


def _set_generation(ws: Workspace, **values: object) -> Workspace:
    """Rewrite the workspace's [generation] settings and reopen it (what an operator editing the TOML does)."""
    import tomllib

    import tomli_w

    path = ws.root / "datawheel.toml"
    raw = tomllib.loads(path.read_text())
    raw["generation"] = {**raw.get("generation", {}), **values}
    path.write_text(tomli_w.dumps(raw))
    ws.store.close()
    return Workspace.open(ws.root)


def _corrected_cycle(client, ws: Workspace) -> dict:
    for i in range(6):
        for user in ("alice", "bob"):
            out = _ask(client, user, f"item {20 + i} color?")
            r = client.post("/v1/feedback", headers=APP, json={
                "interaction_id": out["id"], "user_id": user, "correction": COLORS[i % 5]})
            assert r.status_code == 201
    r = client.post("/v1/cycles", headers=ADMIN, json={})
    assert r.status_code == 202, r.text
    return _wait(client, r.json()["cycle_id"])


def _wait(client, cycle_id: str) -> dict:
    for _ in range(1500):
        cycle = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
        if cycle["status"] != "running":
            return cycle
        time.sleep(0.2)
    raise AssertionError("cycle did not finish")


@pytest.fixture
def cycled(chat_ws: Workspace):
    """A workspace after one cycle on two users' corrections, with DPO run on however few pairs there are."""
    ws = _set_generation(chat_ws, preference="dpo", preference_min_rows=1, preference_epochs=1)
    with make_client(ws) as client:
        cycle = _corrected_cycle(client, ws)
        yield ws, client, cycle
    ws.store.close()


def test_cycle_trains_sft_then_dpo_and_erasure_names_the_adapter(cycled) -> None:
    ws, client, cycle = cycled
    assert cycle["status"] == "done", cycle
    report = cycle["report"]
    assert report["snapshot"]["sft"] == 6 and report["snapshot"]["dpo"] >= 6
    assert report["decision"] in ("promoted", "rejected")
    candidate = report["candidate_version"]
    info = ws.store.get_model(candidate)["train_info"]
    assert info["preference"] == "dpo" and info["preference_rows"] == report["snapshot"]["dpo"]
    snap = ws.store.get_snapshot(report["snapshot"]["id"])
    table = pq.read_table(ws.root / snap["path"])
    assert set(table.column("kind").to_pylist()) >= {"sft", "dpo"}
    assert (ws.root / "snapshots" / f"{snap['id']}.datasheet.md").is_file()
    receipt = client.delete("/v1/users/alice", headers=APP).json()
    assert candidate in receipt["model_versions_trained_on_user_data"]
    table = pq.read_table(ws.root / snap["path"])
    assert ws.user_ref("alice") not in {r for refs in table.column("user_refs").to_pylist() for r in refs}
    assert all(ex.user_id != "alice" for ex in ws.store.exchanges())


def test_retrain_without_a_user_on_a_generation_workspace(cycled) -> None:
    ws, client, cycle = cycled
    if cycle["report"]["decision"] != "promoted":  # the replacement is of the champion trained on user data
        version = cycle["report"]["candidate_version"]
        assert client.post(f"/v1/models/{version}/promote", headers=ADMIN).status_code == 200
    assert client.post("/v1/users/bob/retrain-without", headers=ADMIN).status_code == 409  # not erased yet
    receipt = client.delete("/v1/users/bob", headers=APP).json()
    assert receipt["serving_aliases_affected"] == ["champion"] and receipt["action"] == "left_to_operator"
    r = client.post("/v1/users/bob/retrain-without", headers=ADMIN)
    assert r.status_code == 202, r.text
    done = _wait(client, r.json()["cycle_id"])
    assert done["status"] == "done", done
    report = done["report"]
    # the erasure already rewrote the champion's snapshot without bob's rows: the replacement trains on that
    assert report["rows_removed"] == 0 and report["replaces"] == cycle["report"]["candidate_version"]
    table = pq.read_table(ws.root / ws.store.get_snapshot(report["snapshot"]["id"])["path"])
    assert ws.user_ref("bob") not in {r for refs in table.column("user_refs").to_pylist() for r in refs}


def test_exports_load_in_datasets_and_trl(cycled, tmp_path: Path, tiny_base: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from typer.testing import CliRunner

    from datawheel.cli.main import app

    ws, _, cycle = cycled
    snap = cycle["report"]["snapshot"]["id"]
    runner = CliRunner()
    for fmt in ("openai", "trl", "hf"):
        r = runner.invoke(app, ["datasets", str(ws.root), "--export", snap, "--to", str(tmp_path / fmt),
                                "--format", fmt])
        assert r.exit_code == 0, r.output
    openai_sft = [json.loads(x) for x in (tmp_path / "openai" / "sft.jsonl").read_text().splitlines()]
    assert openai_sft[0]["messages"][-1]["role"] == "assistant" and not (tmp_path / "openai" / "kto.jsonl").exists()
    pref = json.loads((tmp_path / "openai" / "dpo.jsonl").read_text().splitlines()[0])
    assert set(pref) == {"input", "preferred_output", "non_preferred_output"}
    hf_sft = datasets.load_dataset(str(tmp_path / "hf"), "sft", split="train")
    assert len(hf_sft) == 6 and hf_sft[0]["messages"][-1]["content"] in COLORS
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "trl" / "dpo.jsonl"), split="train")
    assert set(dpo.column_names) == {"prompt", "chosen", "rejected"}
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_base),
                             args=trl.DPOConfig(output_dir=str(tmp_path / "trl-out"), max_steps=1, report_to=[],
                                                per_device_train_batch_size=2, save_strategy="no", use_cpu=True,
                                                disable_tqdm=True),
                             train_dataset=dpo, processing_class=AutoTokenizer.from_pretrained(tiny_base))
    assert trainer.train().global_step == 1


def test_cycle_with_nothing_new_does_not_train(chat_ws: Workspace) -> None:
    cycle_id = chat_ws.store.start_cycle(trigger="manual")
    report = run_cycle(chat_ws, cycle_id)
    assert report["decision"] == "skipped" and report["trained_on"] == 0


def test_concurrent_greedy_requests_share_one_generate(chat_ws: Workspace) -> None:
    import threading

    from datawheel.models.chat_serving import ChatServer

    server = ChatServer(chat_ws)
    _, lm = server.champion_lm()
    convs = [(("user", f"item {i} color?"),) for i in range(10, 14)]  # same length: no padding in the batch
    alone = [lm.generate([c], max_new_tokens=5)[0][0] for c in convs]
    answers: dict[int, object] = {}
    with lm._lock:  # the model is busy: requests arriving now queue up behind the first
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, server.greedy(lm, convs[i], 5)))
                   for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
    for t in threads:
        t.join(30)
    assert max(server.batch_sizes) >= 2 and sum(server.batch_sizes) == 4
    assert [answers[i] for i in range(4)] == alone


# -- proxy mode: an upstream answers until the local model is good enough ----------------------------------------


@pytest.fixture(scope="module")
def upstream_url():
    """A stand-in for a hosted OpenAI-compatible API: it knows every item's colour."""
    import re
    import socket
    import threading

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    stand_in = FastAPI()
    seen: list[dict] = []

    @stand_in.post("/v1/chat/completions", response_model=None)
    def complete(body: dict) -> dict | StreamingResponse:
        seen.append(body)
        number = re.search(r"\d+", body["messages"][-1]["content"])
        answer = COLORS[int(number.group()) % 5] if number else "unknown"
        if body.get("stream"):  # as OpenAI streams: a role, a piece per character, the finish, usage, [DONE]
            def events():
                yield 'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
                for ch in answer:
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': ch}}]})}\n\n"
                yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
                yield 'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\n'
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return {"id": "up-1", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
                "choices": [{"index": i, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"} for i in range(body.get("n", 1))],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(stand_in, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True


def _stream_pieces(client, user: str, text: str) -> tuple[list[str], dict]:
    pieces, usage = [], {}
    with client.stream("POST", "/v1/chat/completions", headers=APP, json={
            "messages": [{"role": "user", "content": text}], "user": user, "stream": True,
            "consent": {"training": True}, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[len("data: "):])
                assert "error" not in event, event
                pieces += [c["delta"]["content"] for c in event["choices"] if c["delta"].get("content")]
                usage = event.get("usage") or usage
    return pieces, usage


def test_proxy_mode_serves_the_upstream_and_distils_it(tmp_path: Path, tiny_base: Path, upstream_url) -> None:
    url, seen = upstream_url
    data = tmp_path / "data"
    data.mkdir()
    seed = _write(data / "seed.jsonl", [{"prompt": f"item {i} color?", "response": COLORS[i % 5]} for i in range(6)])
    golden = _write(data / "golden.jsonl", [{"prompt": f"golden {i} color?", "response": COLORS[i % 5]}
                                            for i in range(6)])
    ws = init_workspace(tmp_path / "ws", task="text-generation", labels=(), seed_data=seed, eval_data=golden,
                        generation_options={"base_model": str(tiny_base), **FAST,
                                            "upstream": {"url": url, "model": "big-model"}})
    models = {m["version"]: m for m in ws.store.list_models()}
    assert models[3]["model_name"] == "upstream" and models[3]["metrics"]["score"] == 1.0
    assert ws.store.aliases()["champion"] == 3  # the tiny local model is far below the upstream
    assert seen[-1]["model"] == "big-model"
    with make_client(ws) as client:
        out = _ask(client, "u1", "item 7 color?")
        assert out["model"] == "datawheel-v3" and out["choices"][0]["message"]["content"] == COLORS[7 % 5]
        for i in range(8, 12):  # unrated upstream answers: accepted, so distilled
            _ask(client, f"u{i}", f"item {i} color?")
        pieces, usage = _stream_pieces(client, "s1", "item 13 color?")
        assert len(pieces) == len(COLORS[13 % 5]) and "".join(pieces) == COLORS[13 % 5]  # relayed as it came
        assert usage["completion_tokens"] == 2  # the upstream's own count
        assert seen[-1]["stream"] is True
        r = client.post("/v1/cycles", headers=ADMIN, json={})
        cycle = _wait(client, r.json()["cycle_id"])
    assert cycle["status"] == "done", cycle
    report = cycle["report"]
    assert report["snapshot"]["sft"] == 6  # every accepted upstream answer: u1, u8-u11 and the streamed one
    assert report["decision"] == "rejected" and "auto_margin" in report["decision_reasons"][0]
    assert ws.store.aliases()["champion"] == 3
    ws.store.close()


def test_an_upstream_that_fails_is_a_502_and_nothing_is_stored(chat_ws: Workspace) -> None:
    import tomllib

    import tomli_w

    from datawheel.models.adapters import AdapterRegistry

    path = chat_ws.root / "datawheel.toml"
    raw = tomllib.loads(path.read_text())
    raw["upstream"] = {"url": "http://127.0.0.1:9/v1", "model": "gone", "timeout": 2.0}  # nothing listens there
    path.write_text(tomli_w.dumps(raw))
    chat_ws.store.close()
    ws = Workspace.open(chat_ws.root)
    registry = AdapterRegistry(ws)
    version = registry.register_upstream(registry.upstream(), {"metric": "exact", "score": 1.0})
    registry.promote(version, actor="test", reason="proxy mode")
    with make_client(ws) as client:
        r = client.post("/v1/chat/completions", headers=APP, json={
            "messages": [{"role": "user", "content": "mail jane@example.com the item 3 color"}], "user": "u1",
            "consent": {"training": True}})
        assert r.status_code == 502 and r.json()["error"] == "upstream_error"
        assert "jane" not in r.text
        r = client.post("/v1/chat/completions", headers=APP, json={  # streamed: still a 502, not a broken stream
            "messages": [{"role": "user", "content": "item 3 color"}], "user": "u1", "stream": True})
        assert r.status_code == 502 and r.json()["error"] == "upstream_error"
    assert ws.store.exchanges() == []
    ws.store.close()


def test_the_python_client_chats_and_corrects(chat_ws: Workspace) -> None:
    from datawheel import Client, ClientError
    from datawheel.api.app import create_app
    from datawheel.demo.run import BackgroundServer, _free_port
    from datawheel.settings import Settings

    port = _free_port()
    app = create_app(chat_ws, Settings(app_key=APP_KEY, admin_key="admin-key-for-tests-0123456789",
                                       cycle_in_subprocess=False))
    with BackgroundServer(app, port), Client(f"http://127.0.0.1:{port}", APP_KEY) as client:
        reply = client.chat("c1", [{"role": "user", "content": "item 2 color?"}], consent=True, max_tokens=3)
        assert reply.object == "chat.completion"
        assert client.feedback(reply.id, "c1", correction="green", rating=-1)
        with pytest.raises(ClientError) as err:
            client.feedback(reply.id, "c1", chosen=1)
        assert err.value.status == 422 and err.value.code == "invalid_input"
    [ex] = chat_ws.store.exchanges()
    assert ex.feedback[0].correction == "green"


def test_a_users_export_shows_their_conversations_answers_and_corrections(chat_client, chat_ws: Workspace) -> None:
    out = _ask(chat_client, "u5", "item 6 color?")
    chat_client.post("/v1/feedback", headers=APP, json={"interaction_id": out["id"], "user_id": "u5",
                                                        "correction": "green"})
    r = chat_client.get("/v1/users/u5/data", headers=APP)
    assert r.status_code == 200, r.text
    [record] = r.json()["records"]
    assert record["input"] == {"messages": [{"role": "user", "content": "item 6 color?"}]}
    assert record["answers"] == [chat_ws.screen().clean_text(out["choices"][0]["message"]["content"], "answer")]
    assert record["feedback"][0]["correction"] == "green"


def test_the_generation_gate_blocks_a_slice_and_needs_a_reason_to_promote() -> None:
    from datawheel.config import GateSection
    from datawheel.stages.gate import gate_generation

    policy = GateSection(min_slice_size=5)

    def m(score: float, zh: float) -> dict:
        return {"metric": "exact", "score": score, "slices": {"lang=zh": {"n": 10, "score": zh}}}
    blocked = gate_generation(m(0.9, 0.2), m(0.7, 0.6), policy, paired={"p_value": 0.001})
    assert not blocked.promote and "slice lang=zh" in blocked.reasons[0]
    assert gate_generation(m(0.9, 0.6), m(0.7, 0.6), policy, paired={"p_value": 0.001}, more_data=False).promote
    stale = gate_generation(m(0.7, 0.6), m(0.7, 0.6), policy, paired={"p_value": 1.0}, more_data=False)
    assert not stale.promote and "no significant improvement" in stale.reasons[0]
    assert not gate_generation(m(0.5, 0.6), m(0.7, 0.6), policy, replacing="erased").promote


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_lora_trains_in_either_precision_and_says_which(tmp_path: Path, tiny_base: Path, precision: str) -> None:
    """bfloat16 autocast (twice as fast on a CPU that has it) must still learn, and the card must say it ran."""
    from datawheel.config import GenerationSection
    from datawheel.stages.train_lora import SftExample, train_lora

    examples = [SftExample(((("user", f"item {i} color?"),)), COLORS[i % 5]) for i in range(10)]
    cfg = GenerationSection(**{**FAST, "epochs": 3, "train_precision": precision})
    trained = train_lora(tiny_base, "sha", examples, cfg, tmp_path / "adapter")
    assert trained.info["precision"] == precision
    losses = [h["loss"] for h in trained.info["history"]]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_a_client_leaving_a_proxied_stream_gives_the_upstream_connection_back() -> None:
    """The stream is closed after its first event (the client went away): the upstream's response is closed too."""
    import httpx

    from datawheel.api.routes.chat import _stream
    from datawheel.tasks.upstream import UpstreamStream

    upstream = httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=httpx.ByteStream(b'data: {"choices": [{"delta": {"content": "red"}}]}\n\n'))
    events = _stream(None, None, UpstreamStream(upstream), None, None, 5, 1, 0)  # type: ignore[arg-type]
    assert next(events).startswith("data: ")
    assert not upstream.is_closed
    events.close()
    assert upstream.is_closed
