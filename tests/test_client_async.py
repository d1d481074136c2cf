"""The async client, driven through the app in-process (``httpx.ASGITransport``): the same answers, keys and
errors as the blocking one, as coroutines and async iterators."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from datawheel.api.app import create_app
from datawheel.api.responses import ErasureReceipt, EventOut, QueueOut
from datawheel.client import AsyncClient
from datawheel.demo.run import _free_port
from datawheel.errors import (
    ClientNotFound,
    Forbidden,
    InvalidRequest,
    MissingKey,
    ServerUnavailable,
    Unauthorized,
    WaitTimedOut,
)
from datawheel.settings import Settings
from datawheel.tasks.image import to_png_base64

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def transport(ws) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(ws, Settings(cycle_in_subprocess=False)))


def _client(transport: httpx.AsyncBaseTransport, key: str | None = None, **keys: str) -> AsyncClient:
    return AsyncClient("http://datawheel.test", key, transport=transport, **keys)


async def test_a_users_data_from_prediction_to_erasure(ws, splits, transport):
    async with _client(transport, app_key=ws.secrets.app_key) as dw:
        answers = [await dw.predict("ana", {"image": to_png_base64(splits.pool[i][0])}, consent=True)
                   for i in range(3)]
        await dw.feedback(answers[0].interaction_id, "ana", label=answers[0].label)
        consent = await dw.set_consent("ana", analytics=True)
        assert consent.consent.training and consent.consent.analytics
        records = [r async for r in dw.iter_user_records("ana", limit=2)]
        assert [r.id for r in records] == [a.interaction_id for a in answers]
        assert [len(r.feedback) for r in records] == [1, 0, 0]
        receipt = await dw.erase("ana")
        assert isinstance(receipt, ErasureReceipt) and (receipt.records_deleted, receipt.feedback_deleted) == (3, 1)
        assert (await dw.erasure_receipt(receipt.receipt_id)).records_deleted == 3
        with pytest.raises(ClientNotFound):
            await dw.user_data("ana")


async def test_an_operator_runs_a_cycle_and_reads_the_wheel(ws, transport):
    async with _client(transport, admin_key=ws.secrets.admin_key) as dw:
        state = await dw.wait_cycle(await dw.start_cycle(), timeout=300)
        assert state.status == "done", state.error
        assert [c.cycle_id async for c in dw.iter_cycles(limit=1)] == [state.cycle_id]
        assert 1 in [m.version async for m in dw.iter_models()]
        assert isinstance(await dw.annotation_queue(limit=5), QueueOut)  # the admin key opens annotation too
        events = [e async for e in dw.events(after=0, wait=False)]
        assert all(isinstance(e, EventOut) for e in events)
        assert [e.cycle_id for e in events if e.type in ("cycle.started", "cycle.finished")] == [state.cycle_id] * 2
        entries = [e async for e in dw.iter_audit(limit=2)]
        assert "cycle_finish" in [e.action for e in entries]
        assert [e.id for e in entries] == sorted({e.id for e in entries}, reverse=True)  # newest first, once each


async def test_refusals_and_missing_keys(ws, transport):
    async with _client(transport, app_key=ws.secrets.app_key) as product:
        with pytest.raises(InvalidRequest) as invalid:
            await product.predict("ana", {"image": "not base64 at all!"})
        assert invalid.value.code == "invalid_input"
        with pytest.raises(MissingKey, match="annotator_key= or admin_key="):
            await product.annotate("ab" * 32, "1")
        with pytest.raises(MissingKey, match="admin_key="):
            product.events()  # an iterator refuses when called, not when first read
    async with _client(transport, annotator_key=ws.secrets.annotator_key) as annotator:
        with pytest.raises(ClientNotFound) as gone:
            await annotator.annotate("ab" * 32, "1")
        assert gone.value.code == "not_found"
    async with _client(transport, ws.secrets.annotator_key) as older:  # one key for all: the server refuses
        with pytest.raises(Forbidden):
            await older.predict("ana", {"image": "x"})
    async with _client(transport, admin_key="not-a-key-but-long-enough") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.rollback()


async def test_no_answer_and_no_timely_answer_raise_server_unavailable():
    async with AsyncClient(f"http://127.0.0.1:{_free_port()}", timeout=2) as nobody:
        with pytest.raises(ServerUnavailable) as down:
            await nobody.health()
        assert down.value.status is None and down.value.code == "server_unavailable"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connections are accepted by the kernel; nothing is ever answered
        async with AsyncClient(f"http://127.0.0.1:{silent.getsockname()[1]}", admin_key="k" * 20,
                               timeout=0.3) as slow:
            with pytest.raises(ServerUnavailable, match="Timeout"):
                await slow.models()
            with pytest.raises(ServerUnavailable, match="Timeout"):
                await anext(slow.events())


async def test_waiting_gives_up_with_wait_timed_out():
    running = {"cycle_id": "c1", "status": "running", "trigger": "api", "decision": None, "params": {},
               "champion_version": 1, "candidate_version": None, "snapshot_id": None, "report": None,
               "error": None, "started_at": "2024-05-01T00:00:00+00:00", "finished_at": None}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=running))
    async with _client(transport, admin_key="k" * 20) as dw:
        with pytest.raises(WaitTimedOut):
            await dw.wait_cycle("c1", timeout=0, poll=0)


@pytest.fixture
def chat_transport(tmp_path):
    """A text-generation workspace on a tiny random Llama (tests/llm_fixtures.py), served in-process."""
    pytest.importorskip("peft")
    from datawheel.wheel.init import init_workspace
    from llm_fixtures import build_tiny_llama

    for name in ("seed", "golden"):
        rows = [{"prompt": f"{name} {i} colour?", "response": ["red", "blue", "green"][i % 3]} for i in range(6)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ws = init_workspace(tmp_path / "ws", task="text-generation", labels=(), seed_data=tmp_path / "seed.jsonl",
                        eval_data=tmp_path / "golden.jsonl", generation_options={
                            "base_model": str(build_tiny_llama(tmp_path / "llama")), "epochs": 1, "max_new_tokens": 4,
                            "lora_r": 4, "lora_alpha": 8, "threads": 1})
    yield ws, httpx.ASGITransport(app=create_app(ws, Settings(cycle_in_subprocess=False)))
    ws.store.close()


async def test_chat_whole_and_streamed_then_feedback_on_it(chat_transport):
    ws, transport = chat_transport
    ask = [{"role": "user", "content": "item 4 colour?"}]
    async with _client(transport, app_key=ws.secrets.app_key) as dw:
        whole = await dw.chat("cleo", ask, consent=True, max_tokens=3)
        assert whole.object == "chat.completion" and len(whole.choices) == 1
        chunks = [c async for c in dw.chat_stream("cleo", ask, include_usage=True, max_tokens=3)]
        assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason in ("stop", "length") and chunks[-1].usage is not None
        text = "".join(c.choices[0].delta.content or "" for c in chunks).strip()
        # stored under the streamed id, as the screen keeps it (the tiny random model can write a ligature)
        assert ws.store.completions_of(chunks[0].id) == [ws.screen().clean_text(text, "answer")]
        assert await dw.feedback(chunks[0].id, "cleo", correction="blue")
        with pytest.raises(InvalidRequest, match="label"):
            await dw.feedback(whole.id, "cleo", label="blue")  # a generation workspace has no labels
