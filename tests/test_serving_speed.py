"""Group commit on the predict/feedback write path: concurrent writes share a transaction, fail alone, stay durable."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text

from conftest import APP, make_client
from datawheel.errors import ConsentRequired, NotFound
from datawheel.store import tables as t
from datawheel.store.group_commit import GroupCommitter


def _record(ws, user: str, **kw) -> str:
    return ws.store.add_record(user_id=user, kind="interaction", input=b"x", content_hash=f"h-{user}",
                               consent=None, predicted_label="1", **kw)


def _count(ws, table) -> int:
    with ws.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _refuse(_consent: dict) -> None:
    raise ConsentRequired("consent: refused for the test")


def test_concurrent_writes_share_transactions_and_all_commit(ws):
    """Many threads writing at once: every write is stored once, in fewer transactions than writes."""
    n = 200
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: _record(ws, f"user-{i % 7}"), range(n)))
    assert len(set(ids)) == n
    with ws.store.engine.connect() as conn:
        stored = set(conn.execute(select(t.records.c.id)).scalars())
    assert set(ids) <= stored
    committer = ws.store._group_commit()
    assert committer.writes >= n
    assert committer.batches < committer.writes  # at least some writes shared a commit


def test_a_failing_write_fails_alone_in_its_batch(ws):
    """Consent refusals and missing interactions raise in their own caller; the batch's other writes commit."""
    before = _count(ws, t.records)
    good = _record(ws, "owner")
    outcomes: dict[int, object] = {}
    start = threading.Barrier(24)

    def work(i: int) -> None:
        start.wait()
        try:
            if i % 3 == 0:
                outcomes[i] = _record(ws, f"refused-{i}", require=_refuse)
            elif i % 3 == 1:
                outcomes[i] = ws.store.add_feedback(record_id="no-such-id" if i % 2 else good, user_id="owner",
                                                    label="3", rating=None, comment=None)
            else:
                outcomes[i] = _record(ws, f"ok-{i}")
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, out in outcomes.items():
        if i % 3 == 0:
            assert isinstance(out, ConsentRequired)
        elif i % 3 == 1 and i % 2:
            assert isinstance(out, NotFound)
        else:
            assert isinstance(out, str)
    with ws.store.engine.connect() as conn:
        users = set(conn.execute(select(t.users.c.user_id)).scalars())
        fb = conn.execute(select(func.count()).select_from(t.feedback)).scalar_one()
    assert not any(u.startswith("refused-") for u in users)  # a refusal leaves no trace, not even the user
    assert {f"ok-{i}" for i in range(24) if i % 3 == 2} <= users
    assert _count(ws, t.records) == before + 1 + 8
    assert fb == sum(1 for i in range(24) if i % 3 == 1 and not i % 2)


def test_a_failed_commit_fails_every_write_in_the_batch(ws, monkeypatch):
    """If the shared transaction cannot commit, no caller is told its write was stored, and none is."""
    from datawheel.store import group_commit

    @contextmanager
    def failing_write(engine):
        with engine.connect() as conn:
            conn.execution_options(write=True)
            tx = conn.begin()
            yield conn
            tx.rollback()
            raise OSError("disk I/O error at commit")

    monkeypatch.setattr(group_commit, "write", failing_write)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_record, ws, f"lost-{i}") for i in range(16)]
    for f in futures:
        with pytest.raises(OSError):
            f.result()
    with ws.store.engine.connect() as conn:
        users = set(conn.execute(select(t.users.c.user_id)).scalars())
    assert not any(u.startswith("lost-") for u in users)


def test_a_lone_write_is_served_and_the_writer_stops_when_idle(ws):
    committer = GroupCommitter(ws.store.engine, idle_exit=0.05)
    assert committer.run(lambda batch: batch.read(text("SELECT 7")).scalar_one()) == 7
    thread = committer.worker.thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive() and committer.worker.thread is None
    assert committer.run(lambda batch: 8) == 8  # a later write starts a new writer


@pytest.mark.parametrize("n", [64])
def test_concurrent_predict_and_feedback_over_the_api(ws, n):
    """Through the API: every acknowledged predict is stored once, and feedback on each is accepted."""
    from datawheel.demo.run import digit_splits
    from datawheel.tasks.image import to_png_base64

    pixels = [p for p, _ in digit_splits().pool[:8]]
    with make_client(ws) as client:
        def one(i: int) -> tuple[str, int]:
            r = client.post("/v1/predict", headers=APP, json={"user_id": f"u{i % 5}",
                                                               "input": {"image": to_png_base64(pixels[i % 8])}})
            assert r.status_code == 200, r.text
            rid = r.json()["interaction_id"]
            f = client.post("/v1/feedback", headers=APP, json={"interaction_id": rid, "user_id": f"u{i % 5}",
                                                                "rating": 1})
            return rid, f.status_code

        with ThreadPoolExecutor(8) as pool:
            out = list(pool.map(one, range(n)))
    assert all(code == 201 for _, code in out)
    with ws.store.engine.connect() as conn:
        ids = list(conn.execute(select(t.records.c.id).where(t.records.c.id.in_([r for r, _ in out]))).scalars())
        fb = conn.execute(select(func.count()).select_from(t.feedback)
                          .where(t.feedback.c.record_id.in_([r for r, _ in out]))).scalar_one()
    assert sorted(ids) == sorted(r for r, _ in out)
    assert fb == n


def test_a_refused_write_drops_its_deferred_rows_and_memo(ws):
    """In one batch: a write that defers a row and then raises leaves nothing; the writes around it commit."""
    committer = GroupCommitter(ws.store.engine)
    gate = threading.Event()
    committer.submit(lambda batch: gate.wait(5))  # holds the writer so the next three share one batch
    ok_a = committer.submit(lambda batch: batch.defer(t.users, _user_row("batch-a")))

    def refused(batch):
        batch.defer(t.users, _user_row("batch-refused"))
        batch.remember(("user", "batch-a"), {"training": True, "analytics": True})
        raise ConsentRequired("consent: refused for the test")

    bad = committer.submit(refused)
    seen = committer.submit(lambda batch: batch.recall(("user", "batch-a")))
    gate.set()
    ok_a.result(5)
    with pytest.raises(ConsentRequired):
        bad.result(5)
    assert seen.result(5) is None  # the refused write's memo never reached the next write
    with ws.store.engine.connect() as conn:
        users = set(conn.execute(select(t.users.c.user_id)).scalars())
    assert "batch-a" in users and "batch-refused" not in users


def _user_row(user_id: str) -> dict:
    from datawheel.store.db import utcnow

    now = utcnow()
    return {"user_id": user_id, "consent_training": False, "consent_analytics": False, "consent_updated_at": now,
            "created_at": now}


def test_consent_given_in_a_batch_holds_for_the_users_next_write_in_it(ws):
    """A new user's first write grants consent and the second relies on it, both in one batch: both stored,
    the grant written once with its history, and the record made under it says so."""
    committer = ws.store._group_commit()
    gate = threading.Event()
    committer.submit(lambda batch: gate.wait(5))
    needs_training = lambda granted: None if granted["training"] else _refuse(granted)  # noqa: E731
    def write(**kw) -> str:
        return ws.store.add_record(user_id="grants", kind="interaction", input=b"x", content_hash="h",
                                   predicted_label="1", **kw)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(write, consent={"training": True})
        _wait_queued(committer, 1)
        second = pool.submit(write, consent=None, require=needs_training)
        _wait_queued(committer, 2)
        gate.set()
        ids = [first.result(5), second.result(5)]
    with ws.store.engine.connect() as conn:
        stored = conn.execute(select(t.records.c.id, t.records.c.consent_training)
                              .where(t.records.c.user_id == "grants")).all()
        events = conn.execute(select(func.count()).select_from(t.consent_events)
                              .where(t.consent_events.c.user_id == "grants")).scalar_one()
    assert sorted(r.id for r in stored) == sorted(ids) and all(r.consent_training for r in stored)
    assert events == 1


def _wait_queued(committer: GroupCommitter, n: int) -> None:
    """Until ``n`` writes wait in the queue (the writer is held by the test), so they form one batch."""
    for _ in range(10_000):
        if committer.worker._queue.qsize() >= n:
            return
        threading.Event().wait(0.001)
    raise AssertionError("the writes never queued")


def _same_answers(got: list, expected: list) -> None:
    """Same version and label; scores equal up to float rounding (a batched matmul may sum in another order)."""
    assert [(v, label) for v, label, _ in got] == [(v, label) for v, label, _ in expected]
    for (_, _, scores), (_, _, want) in zip(got, expected):
        assert scores.keys() == want.keys() and all(abs(scores[k] - want[k]) <= 1e-5 for k in want)


def test_requests_in_one_loop_turn_share_one_forward_pass(ws, monkeypatch):
    """Micro-batching: concurrent requests are answered by one forward pass, each exactly as alone."""
    import asyncio

    from datawheel.demo.run import digit_splits
    from datawheel.models.serving import ModelServer

    server = ModelServer(ws)
    items = [ws.task.parse({"pixels": p.tolist()}) for p, _ in digit_splits().pool[:12]]
    alone = [server.predict(item, f"u{n}") for n, item in enumerate(items)]
    passes: list[int] = []
    answers = server._answers
    monkeypatch.setattr(server, "_answers", lambda model, batch: passes.append(len(batch)) or answers(model, batch))

    async def burst() -> list:
        return await asyncio.gather(*(server.predict_batched(item, f"u{n}") for n, item in enumerate(items)))

    _same_answers(asyncio.run(burst()), alone)
    assert passes == [len(items)]
    passes.clear()
    _same_answers([asyncio.run(_lone(server, items[0]))], alone[:1])
    assert passes == [1]  # a lone request is answered by a pass of its own, waiting for nobody


async def _lone(server, item):
    return await server.predict_batched(item, "u0")


def test_a_bad_item_fails_alone_in_its_batch(ws):
    import asyncio

    from datawheel.demo.run import digit_splits
    from datawheel.models.serving import ModelServer

    server = ModelServer(ws)
    good = ws.task.parse({"pixels": digit_splits().pool[0][0].tolist()})

    async def burst() -> list:
        return await asyncio.gather(server.predict_batched(good, "a"), server.predict_batched("not an image", "b"),
                                    server.predict_batched(good, "c"), return_exceptions=True)

    first, bad, last = asyncio.run(burst())
    assert first == last == server.predict(good, "a")
    assert isinstance(bad, Exception)
