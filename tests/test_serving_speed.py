"""Group commit on the predict/feedback write path: concurrent writes share a transaction, fail alone, stay durable."""

from __future__ import annotations

import asyncio
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
    """If the shared transaction cannot commit, no caller is told its write was stored, and none is; the writer
    then takes a fresh connection and the next write is stored."""
    dialect = ws.store.engine.dialect
    commit = dialect.do_commit

    def failing_commit(dbapi_conn):
        raise OSError("disk I/O error at commit")

    monkeypatch.setattr(dialect, "do_commit", failing_commit)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_record, ws, f"lost-{i}") for i in range(16)]
    for f in futures:
        with pytest.raises(OSError):
            f.result()
    monkeypatch.setattr(dialect, "do_commit", commit)
    kept = _record(ws, "after-the-failure")
    with ws.store.engine.connect() as conn:
        users = set(conn.execute(select(t.users.c.user_id)).scalars())
        records = set(conn.execute(select(t.records.c.id)).scalars())
    assert not any(u.startswith("lost-") for u in users)
    assert "after-the-failure" in users and kept in records


def test_a_lone_write_is_served_and_the_writer_stops_when_idle(ws):
    """The writer keeps one connection and its lock file from batch to batch while it runs, and lets both go when it
    stops."""
    pool = ws.store.engine.pool
    committer = GroupCommitter(ws.store.engine, idle_exit=0.2)
    assert committer.run(lambda batch: batch.read(text("SELECT 7")).scalar_one()) == 7
    assert committer.run(lambda batch: 8) == 8
    assert pool.checkedout() == 1  # the same connection served both batches
    lock_fd = committer.writer_turn._fd
    assert lock_fd is not None and committer.run(lambda batch: 0) == 0 and committer.writer_turn._fd == lock_fd
    thread = committer.worker.thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive() and committer.worker.thread is None
    assert pool.checkedout() == 0 and committer.writer_turn._fd is None  # and the lock file
    assert committer.run(lambda batch: 9) == 9  # a later write starts a new writer


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


def _needs_training(granted: dict) -> None:
    if not granted["training"]:
        _refuse(granted)


def _hold(committer: GroupCommitter) -> threading.Event:
    """Hold the writer in a batch of its own until the event is set, so the writes queued meanwhile form one batch."""
    gate, holding = threading.Event(), threading.Event()

    def hold(batch) -> None:
        holding.set()
        gate.wait(5)

    committer.submit(hold)
    assert holding.wait(5), "the writer never took the holding write"
    return gate


def test_a_consent_withdrawn_after_a_write_was_queued_holds_for_it(ws, monkeypatch):
    """Consent is read in the write's own transaction: a withdrawal committed after the write was queued (and after
    the same user's earlier batch read it) but before the write's batch began refuses the write."""
    for user in ("cw-a", "cw-b", "cw-c"):
        ws.store.set_consent(user, {"training": True})
        _record(ws, user, require=_needs_training)  # an earlier batch read their consent
    before_turn: list = []
    committer = ws.store._group_commit()
    real_turn = committer.writer_turn

    @contextmanager
    def turn():
        while before_turn:
            before_turn.pop()()
        with real_turn():
            yield

    monkeypatch.setattr(committer, "writer_turn", turn)
    gate = _hold(committer)
    with ThreadPoolExecutor(3) as pool:
        futures = {user: pool.submit(_record, ws, user, require=_needs_training) for user in ("cw-a", "cw-b", "cw-c")}
        _wait_queued(committer, 3)
        before_turn.append(lambda: ws.store.set_consent("cw-b", {"training": False}))  # runs before the next turn
        gate.set()
        stored = futures["cw-a"].result(5), futures["cw-c"].result(5)
        with pytest.raises(ConsentRequired):
            futures["cw-b"].result(5)
    with ws.store.engine.connect() as conn:
        ids = {r.user_id: r.n for r in conn.execute(select(t.records.c.user_id, func.count().label("n"))
                                                     .group_by(t.records.c.user_id))}
        kept = set(conn.execute(select(t.records.c.id).where(t.records.c.id.in_(stored))).scalars())
    assert ids["cw-a"] == ids["cw-c"] == 2 and ids["cw-b"] == 1 and kept == set(stored)


def test_a_batch_reads_all_its_users_consent_in_one_query(ws):
    """Five users' writes in one batch: one read of their consent, and each write gets its own user's (a new user,
    a known one, a consenting one, a refusing one, and one granting consent in the write itself)."""
    ws.store.set_consent("rq-yes", {"training": True})
    ws.store.set_consent("rq-no", {"training": False})
    _record(ws, "rq-known")
    committer = ws.store._group_commit()
    reads: list[str] = []

    def note(statement: str) -> None:  # every statement the writer's SQLite connection runs, whoever issued it
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            reads.append(statement)

    gate = _hold(committer)
    writes = {"rq-new": {}, "rq-yes": {"require": _needs_training}, "rq-no": {"require": _needs_training},
              "rq-known": {}, "rq-grant": {"consent": {"training": True}, "require": _needs_training}}
    with ThreadPoolExecutor(len(writes)) as pool:
        futures = {}
        for user, kw in writes.items():
            futures[user] = pool.submit(lambda user=user, kw=kw: ws.store.add_record(
                user_id=user, kind="interaction", input=b"x", content_hash=f"h-{user}", predicted_label="1",
                **{"consent": None, **kw}))
        _wait_queued(committer, len(writes))
        driver = committer._connection().connection.driver_connection  # the writer keeps it between batches
        driver.set_trace_callback(note)
        try:
            gate.set()
            outcomes = {}
            for user, future in futures.items():
                try:
                    outcomes[user] = future.result(5)
                except ConsentRequired:
                    outcomes[user] = "refused"
        finally:
            driver.set_trace_callback(None)
    assert len(reads) == 2  # one for the batch's five users, one by the write that changes rq-grant's consent
    assert sum(" IN (" in r for r in reads) == 1
    assert outcomes["rq-no"] == "refused" and all(outcomes[u] != "refused" for u in writes if u != "rq-no")
    with ws.store.engine.connect() as conn:
        users = {r.user_id: r.consent_training for r in conn.execute(select(t.users))}
    assert users["rq-new"] is False and users["rq-grant"] is True and "rq-no" in users


def test_coroutines_get_their_outcomes_on_their_loop_and_a_cancelled_write_is_not_made(ws):
    committer = GroupCommitter(ws.store.engine)

    def add(user: str):
        def write(batch):
            batch.defer(t.users, _user_row(user))
            return user
        return write

    def refused(batch):
        batch.defer(t.users, _user_row("co-refused"))
        _refuse({})

    async def main() -> list:
        gate = _hold(committer)
        ok = [committer.submit_async(add(f"co-{n}")) for n in range(5)]
        bad = committer.submit_async(refused)
        dropped = committer.submit_async(add("co-dropped"))
        dropped.cancel()
        gate.set()
        with pytest.raises(ConsentRequired):
            await bad
        return await asyncio.gather(*ok)

    assert asyncio.run(main()) == [f"co-{n}" for n in range(5)]
    with ws.store.engine.connect() as conn:
        users = set(conn.execute(select(t.users.c.user_id)).scalars())
    assert {f"co-{n}" for n in range(5)} <= users
    assert "co-refused" not in users and "co-dropped" not in users


class _Stop(BaseException):
    """What kills a worker thread outright (as SystemExit would)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_lets_go_of_what_it_kept_and_the_next_job_gets_a_new_one():
    from datawheel.batching import BatchWorker

    exits: list[str] = []

    def handle(batch):
        for payload, future in batch:
            if payload == "die":
                raise _Stop()
            future.set_result(payload * 2)

    worker = BatchWorker(handle, name="test-worker", max_batch=4, idle_exit=0.1,
                         on_exit=lambda: exits.append(threading.current_thread().name))
    doomed = worker.submit("die")
    with pytest.raises(RuntimeError, match="batch worker stopped"):
        doomed.result(5)
    for _ in range(500):  # the dying thread lets go (on_exit) before it is gone
        if exits:
            break
        threading.Event().wait(0.01)
    assert exits == ["test-worker"]
    assert worker.submit("ok").result(5) == "okok"  # served by a new thread
    thread = worker.thread
    assert thread is not None
    thread.join(5)
    assert exits == ["test-worker", "test-worker"] and worker.thread is None  # the idle exit lets go too


def _adds(user: str):
    def write(batch):
        batch.defer(t.users, _user_row(user))
        return user
    return write


def _users(ws) -> set[str]:
    with ws.store.engine.connect() as conn:
        return set(conn.execute(select(t.users.c.user_id)).scalars())


def test_a_write_alone_on_its_loop_is_made_at_once_and_its_connection_let_go_when_idle(ws):
    committer = GroupCommitter(ws.store.engine, idle_exit=0.2)

    def refused(batch):
        batch.defer(t.users, _user_row("alone-refused"))
        _refuse({})

    async def main() -> None:
        stored = committer.submit_async(_adds("alone-1"), alone=True)
        assert stored.done() and stored.result() == "alone-1"  # committed before the call returned
        assert "alone-1" in _users(ws) and committer.worker.thread is None  # no writer thread was needed
        bad = committer.submit_async(refused, alone=True)
        assert bad.done() and isinstance(bad.exception(), ConsentRequired)
        company = committer.submit_async(_adds("not-alone"))  # others in flight: made as the loop's turn ends
        assert not company.done()
        assert await company == "not-alone"
        assert committer._loop_conn is not None and committer.wal.is_open and committer.worker.thread is None
        for _ in range(200):  # kept while writes come, let go once they stop
            await asyncio.sleep(0.02)
            if committer._loop_conn is None:
                break
        assert committer._loop_conn is None and not committer.wal.is_open and committer.writer_turn._fd is None
        assert committer.worker.thread is None

    asyncio.run(main())
    assert "alone-refused" not in _users(ws) and committer.writes == 2


def test_a_write_alone_waits_its_turn_behind_a_running_batch(ws):
    """Never two transactions of one writer at once: while a batch runs (or writes are queued) a lone write is
    queued too, and committed by the writer after the batch."""
    committer = GroupCommitter(ws.store.engine)

    async def main() -> list[str]:
        gate = _hold(committer)
        waiting = committer.submit_async(_adds("alone-behind"), alone=True)
        assert not waiting.done()
        queued_too = committer.submit_async(_adds("alone-queued"), alone=True)  # something queued: it queues
        assert not queued_too.done()
        gate.set()
        return list(await asyncio.gather(waiting, queued_too))

    assert asyncio.run(main()) == ["alone-behind", "alone-queued"]
    assert {"alone-behind", "alone-queued"} <= _users(ws)


def test_predictions_one_at_a_time_are_stored_without_the_writer_thread(ws):
    """Sequential predicts (one in flight at a time) are each written at once on the event loop; each record is
    stored before its answer."""
    import numpy as np

    from datawheel.tasks.image import to_png_base64

    image = to_png_base64(np.pad(np.full((12, 4), 255, dtype=np.uint8), 8))
    with make_client(ws) as client:
        committer = ws.store._group_commit()
        ids = []
        for n in range(3):
            r = client.post("/v1/predict", headers=APP, json={"user_id": f"seq-{n}", "input": {"image": image}})
            assert r.status_code == 200, r.text
            ids.append(r.json()["interaction_id"])
            with ws.store.engine.connect() as conn:
                assert conn.execute(select(t.records.c.id).where(t.records.c.id == ids[-1])).first() is not None
        assert committer.worker.thread is None


def test_predicting_leaves_a_module_in_eval_mode_and_switches_one_in_training():
    """The forward pass runs in eval mode: a module left training is switched (dropout off), one already in eval
    mode is not walked again (it cost a served request a sixth of its forward pass)."""
    import torch
    from torch import nn

    from datawheel.tasks.base import predict_logits

    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    x = torch.ones(3, 4)
    first = predict_logits(model, x)
    assert not model.training and not any(m.training for m in model.modules())
    assert torch.equal(first, predict_logits(model, x))  # no dropout: the same answer twice
    calls = []
    model.eval = lambda: calls.append(1) or model  # type: ignore[method-assign]
    predict_logits(model, x)
    assert calls == []
    assert torch.allclose(predict_logits(model, torch.ones(1030, 4), batch_size=512)[:3], first)  # chunked alike


def test_ids_are_uuid7_ordered_by_time_and_unique():
    """Row ids sort by creation time (a batch's rows share the last page of each id index) and stay unguessable:
    RFC 9562's version and variant, the millisecond clock in front, random bits after it."""
    import time
    import uuid

    from datawheel.store.db import new_id

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in ids[:100]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and len(value) == 32
        assert before <= int(value[:12], 16) <= after
    time.sleep(0.002)
    assert new_id() > max(ids)
    # the bits after the clock vary: 74 random bits, not a counter
    tails = {int(v[13:], 16) & ((1 << 62) - 1) for v in ids}
    assert len(tails) == len(ids)


def test_the_writer_turn_excludes_other_processes_and_a_killed_holder_lets_go(ws):
    """The lock file held open between turns still gives one writer at a time across processes, and a process
    killed while holding its turn releases it."""
    import subprocess
    import sys
    import time

    from datawheel.store.db import WriterTurn

    turn = WriterTurn(ws.store.engine)
    assert turn.path is not None
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, sys, time
fd = os.open({turn.path!r}, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def take() -> None:
            with turn():
                got.set()

        taker = threading.Thread(target=take)
        taker.start()
        time.sleep(0.3)
        assert not got.is_set()  # the other process has the turn
        holder.kill()
        assert got.wait(5)  # the kernel let go of the killed holder's lock
        taker.join(5)
    finally:
        holder.kill()
        holder.wait()
        turn.close()
