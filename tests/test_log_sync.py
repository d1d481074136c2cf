"""An event loop's group commits on SQLite: made on the loop without SQLite's sync, answered only after a sync of
the write-ahead log that started after their commit, and never waiting on a lock held elsewhere."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sqlite3
import threading
import time

import pytest
from sqlalchemy import select, text

from datawheel.store import tables as t
from datawheel.store import wal_sync
from datawheel.store.db import utcnow
from datawheel.store.group_commit import GroupCommitter


def _adds(user: str):
    def write(batch):
        now = utcnow()
        batch.defer(t.users, {"user_id": user, "consent_training": False, "consent_analytics": False,
                              "consent_updated_at": now, "created_at": now})
        return user
    return write


def _users(ws) -> set[str]:
    with ws.store.engine.connect() as conn:
        return set(conn.execute(select(t.users.c.user_id)).scalars())


def _log(ws) -> str:
    return ws.store.engine.url.database + "-wal"


class GatedSync:
    """``os.fdatasync`` as the log sync calls it, each call held until the test lets it go; notes what it synced."""

    def __init__(self) -> None:
        self.real = os.fdatasync
        self.started: list[threading.Event] = [threading.Event() for _ in range(8)]
        self.gates: list[threading.Event] = [threading.Event() for _ in range(8)]
        self.inodes: list[int] = []

    def __call__(self, fd: int) -> None:
        n = len(self.inodes)
        self.inodes.append(os.fstat(fd).st_ino)
        self.started[n].set()
        assert self.gates[n].wait(10), "the test never let the sync go"
        self.real(fd)


@pytest.fixture
def gated(monkeypatch) -> GatedSync:
    sync = GatedSync()
    monkeypatch.setattr(wal_sync.os, "fdatasync", sync)
    return sync


async def _until(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


def test_a_loop_turns_writes_are_committed_together_and_answered_only_after_the_log_is_synced(ws, gated):
    committer = GroupCommitter(ws.store.engine)

    async def main() -> None:
        waiters = [committer.submit_async(_adds(f"ls-{n}")) for n in range(4)]
        await _until(gated.started[0])
        assert _users(ws) >= {f"ls-{n}" for n in range(4)}  # committed, in one transaction...
        assert committer.batches == 1 and committer.worker.thread is None
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)  # ...but nobody is told before the sync returns
        gated.gates[0].set()
        assert await asyncio.gather(*waiters) == [f"ls-{n}" for n in range(4)]

    asyncio.run(main())
    assert gated.inodes == [os.stat(_log(ws)).st_ino]  # the file SQLite writes its log to


def test_a_commit_made_while_a_sync_runs_waits_for_the_next_sync(ws, gated):
    committer = GroupCommitter(ws.store.engine)

    async def main() -> None:
        first = committer.submit_async(_adds("ls-first"))
        await _until(gated.started[0])
        second = committer.submit_async(_adds("ls-second"))  # committed during the first sync: not covered by it
        await asyncio.sleep(0.05)
        assert "ls-second" in _users(ws) and not second.done()
        gated.gates[0].set()
        assert await first == "ls-first"
        await _until(gated.started[1])
        await asyncio.sleep(0.05)
        assert not second.done()
        gated.gates[1].set()
        assert await second == "ls-second"

    asyncio.run(main())
    assert len(gated.inodes) == 2


def test_a_refused_write_is_answered_without_waiting_for_the_sync(ws, gated):
    committer = GroupCommitter(ws.store.engine)

    def refused(batch):
        batch.defer(t.users, {"user_id": "ls-refused"})
        raise PermissionError("refused for the test")

    async def main() -> None:
        kept = committer.submit_async(_adds("ls-kept"))
        bad = committer.submit_async(refused)
        with pytest.raises(PermissionError):
            await asyncio.wait_for(bad, 5)
        assert not kept.done()
        gated.gates[0].set()
        assert await kept == "ls-kept"

    asyncio.run(main())
    assert "ls-refused" not in _users(ws)


def test_a_failed_sync_fails_its_writes_and_sqlites_own_sync_takes_over(ws, monkeypatch, gated):
    """A sync that fails fails its writes and those committed while it ran (their frames follow pages the kernel
    may have dropped), however the next sync would go; later writes get SQLite's own sync."""
    committer = GroupCommitter(ws.store.engine)

    def broken(fd: int) -> None:
        gated(fd)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(wal_sync.os, "fdatasync", broken)

    async def main() -> None:
        lost = committer.submit_async(_adds("ls-unsynced"))
        await _until(gated.started[0])
        behind = committer.submit_async(_adds("ls-behind"))  # committed during the failing sync
        await asyncio.sleep(0.05)
        gated.gates[0].set()
        for waiter in (lost, behind):
            with pytest.raises(OSError):
                await asyncio.wait_for(waiter, 5)  # committed, but not known durable: not reported stored
        assert len(gated.inodes) == 1  # no second sync was asked to vouch for them
        later = committer.submit_async(_adds("ls-later"))
        assert await asyncio.wait_for(later, 5) == "ls-later"
        assert committer.worker.thread is not None  # the writer thread, with synchronous=FULL, from now on
        alone = committer.submit_async(_adds("ls-alone"), alone=True)
        assert await asyncio.wait_for(alone, 5) == "ls-alone"

    asyncio.run(main())
    assert committer.wal is not None and committer.wal.failed is not None


def test_a_lone_write_is_synced_before_it_returns(ws, monkeypatch):
    committer = GroupCommitter(ws.store.engine)
    synced: list[int] = []
    real = os.fdatasync

    def sync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(wal_sync.os, "fdatasync", sync)

    async def main() -> None:
        stored = committer.submit_async(_adds("ls-lone"), alone=True)
        assert stored.done() and stored.result() == "ls-lone" and synced == [os.stat(_log(ws)).st_ino]

    asyncio.run(main())


@pytest.mark.parametrize("alone", [False, True])
def test_a_consent_change_on_the_loop_commits_with_its_record_or_leaves_nothing(ws, alone):
    """The loop begins and commits its transaction on the driver; a consent change is written through SQLAlchemy
    (its own savepoint) inside it. The change and its record are committed together, a refused write's change is
    rolled back with it, and the connection serves the next turn."""
    def needs_training(granted: dict) -> None:
        if not granted["training"]:
            raise PermissionError("consent: training needed")

    def record(user: str, consent: dict | None, require=None):
        return ws.store.submit_record_async(alone=alone, user_id=user, kind="interaction", input=b"x",
                                            content_hash=f"h-{user}", consent=consent, predicted_label="1",
                                            require=require)[1]

    async def main() -> None:
        ws.store.set_consent("cc-b", {"training": True})
        await record("cc-a", {"training": True})  # a new user's consent, then their record
        with pytest.raises(PermissionError):  # withdrawn and refused in one write: neither is kept
            await record("cc-b", {"training": False}, needs_training)
        conn = ws.store._group_commit()._loop_conn
        assert conn is not None and not conn.in_transaction()  # SQLAlchemy's view of it is the driver's: closed
        await record("cc-c", None)  # the next turn, on the same connection
        assert ws.store._group_commit()._loop_conn is conn and not conn.connection.driver_connection.in_transaction

    asyncio.run(main())
    with ws.store.engine.connect() as conn:
        users = {r.user_id: r.consent_training for r in conn.execute(select(t.users))}
        records = {r.user_id: r.consent_training for r in conn.execute(select(t.records))}
        events = [(r.user_id, r.granted)
                  for r in conn.execute(select(t.consent_events).order_by(t.consent_events.c.id))]
    assert users == {"cc-a": True, "cc-b": True, "cc-c": False}
    assert records == {"cc-a": True, "cc-c": False}
    assert events == [("cc-b", True), ("cc-a", True)]
    assert ws.store._group_commit().wal is not None and ws.store._group_commit().wal.failed is None


@pytest.mark.parametrize("alone", [False, True])
def test_a_lock_held_by_another_connection_never_stalls_the_loop(ws, alone):
    """SQLite's write lock held elsewhere (a cycle's transaction, another program): the loop's writes go to the
    writer thread, which waits for it, while the loop goes on serving."""
    committer = GroupCommitter(ws.store.engine)
    other = sqlite3.connect(ws.store.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def main() -> int:
        ticks = 0
        started = time.monotonic()
        stored = committer.submit_async(_adds("ls-behind-lock"), alone=alone)
        for _ in range(20):  # the loop runs on while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        # a loop waiting in SQLite's busy handler would have stalled for its whole timeout (30 s) first
        assert time.monotonic() - started < 10 and not stored.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(stored, 10) == "ls-behind-lock"
        return ticks

    try:
        assert asyncio.run(main()) == 20
    finally:
        other.close()
    assert committer.worker.thread is not None  # the writer thread took it


def test_the_turn_held_by_another_writer_hands_the_loops_writes_to_the_writer_thread(ws):
    committer = GroupCommitter(ws.store.engine)
    assert committer.writer_turn.path is not None
    fd = os.open(committer.writer_turn.path, os.O_RDWR | os.O_CREAT, 0o600)  # another process's writer, in effect
    fcntl.flock(fd, fcntl.LOCK_EX)

    async def main() -> None:
        stored = committer.submit_async(_adds("ls-behind-turn"))
        await asyncio.sleep(0.1)
        assert not stored.done()
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert await asyncio.wait_for(stored, 10) == "ls-behind-turn"

    try:
        asyncio.run(main())
    finally:
        os.close(fd)
    assert committer.worker.thread is not None


def test_the_loops_connection_is_let_go_when_idle_and_never_back_to_the_pool(ws):
    """The loop's connection commits without SQLite's sync and waits for no lock: no other user may get it."""
    committer = GroupCommitter(ws.store.engine, idle_exit=0.1)

    async def main() -> None:
        assert await committer.submit_async(_adds("ls-idle")) == "ls-idle"
        assert committer._loop_conn is not None and committer.wal is not None and committer.wal.is_open
        for _ in range(200):
            await asyncio.sleep(0.02)
            if committer._loop_conn is None:
                break
        assert committer._loop_conn is None and not committer.wal.is_open

    asyncio.run(main())
    for _ in range(3):  # whatever the pool hands out keeps the store's settings
        with ws.store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 30000


def test_the_loops_connection_is_kept_while_writes_keep_coming_and_let_go_once_they_stop(ws):
    """The idle timer is set once: a write after it was set postpones the release to ``idle_exit`` after that
    write, not to the timer's first expiry."""
    committer = GroupCommitter(ws.store.engine, idle_exit=0.3)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        while loop.time() - started < 0.75:  # writes every 50 ms, for more than two idle periods
            assert await committer.submit_async(_adds(f"ls-keep-{n}"), alone=n % 2 == 0) == f"ls-keep-{n}"
            last = loop.time()
            assert committer._loop_conn is not None
            n += 1
            await asyncio.sleep(0.05)
        while committer._loop_conn is not None and loop.time() - last < 5:
            await asyncio.sleep(0.01)
        assert committer._loop_conn is None and loop.time() - last >= 0.3 - 0.01

    asyncio.run(main())


def _predict_together(client, n: int, prefix: str) -> list:
    """``n`` predictions sent at once over the app's ASGI interface, each for a user of its own."""
    import httpx
    import numpy as np

    from conftest import APP
    from datawheel.tasks.image import to_png_base64

    image = to_png_base64(np.pad(np.full((12, 4), 255, dtype=np.uint8), 8))

    async def burst() -> list:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await asyncio.gather(*[
                http.post("/v1/predict", headers=APP, json={"user_id": f"{prefix}-{k}", "input": {"image": image}})
                for k in range(n)])

    answers = asyncio.run(burst())
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    return answers


def test_predictions_under_concurrency_are_stored_through_the_loop_and_synced(ws, monkeypatch):
    """Concurrent predicts over the API: every answered prediction's record is stored, and their writes went
    through the loop's commits and the log sync, not the writer thread."""
    from conftest import make_client

    syncs: list[int] = []
    real = os.fdatasync

    def sync(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(wal_sync.os, "fdatasync", sync)
    with make_client(ws) as client:
        answers = _predict_together(client, 24, "lc")
    ids = {r.json()["interaction_id"] for r in answers}
    with ws.store.engine.connect() as conn:
        stored = set(conn.execute(select(t.records.c.id).where(t.records.c.id.in_(ids))).scalars())
    assert stored == ids and syncs


def test_predictions_arriving_together_share_a_forward_pass_and_a_commit(ws, monkeypatch):
    """When the first of them starts, it is the only prediction parsed: it must still wait a turn of the loop
    for the others rather than run its pass, commit and sync alone (which served one worker's requests strictly
    one by one under load, at a third of the rate)."""
    from conftest import make_client

    with make_client(ws) as client:
        server = client.app.state.services.server
        passes: list[int] = []
        answers = server._answers
        monkeypatch.setattr(server, "_answers", lambda model, batch: passes.append(len(batch)) or answers(model, batch))
        committer = ws.store._group_commit()
        commits = committer.batches
        _predict_together(client, 16, "tg")
        assert sum(passes) == 16 and len(passes) <= 4, passes
        assert committer.batches - commits <= 4


def test_writes_that_find_the_turn_taken_are_retried_on_the_loop_with_those_submitted_meanwhile(ws):
    """Another server worker holds the turn for a moment: the loop's writes wait for it on the loop (taking the
    writes submitted meanwhile along), not in the writer thread."""
    committer = GroupCommitter(ws.store.engine, lock_wait=30)
    assert committer.writer_turn.path is not None
    fd = os.open(committer.writer_turn.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)

    async def main() -> list[str]:
        first = committer.submit_async(_adds("lr-first"))
        await asyncio.sleep(0.02)  # several retries find the turn taken
        second = committer.submit_async(_adds("lr-second"))
        await asyncio.sleep(0.02)
        assert not first.done() and not second.done() and committer.batches == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return list(await asyncio.wait_for(asyncio.gather(first, second), 10))

    try:
        assert asyncio.run(main()) == ["lr-first", "lr-second"]
    finally:
        os.close(fd)
    assert committer.batches == 1 and committer.worker.thread is None


def test_unchecked_pages_are_read_as_sqlite_counts_them(tmp_path):
    """The log's index read as https://www.sqlite.org/walformat.html lays it out agrees with SQLite's own count."""
    db = str(tmp_path / "count.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE x (v BLOB)")
    for n in range(40):
        conn.execute("INSERT INTO x VALUES (?)", (os.urandom(3000 + n),))
    before = wal_sync._unchecked_pages(db)
    _, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert before == logged > 40 and copied == logged
    assert wal_sync._unchecked_pages(db) == 0
    conn.execute("INSERT INTO x VALUES (x'00')")
    assert wal_sync._unchecked_pages(db) >= 1
    conn.close()
    assert wal_sync._unchecked_pages(str(tmp_path / "missing.db")) == 0


def test_lone_writes_with_a_short_log_never_wake_the_sync_thread(ws, monkeypatch):
    """A lone write syncs on its loop; the log's length is looked at there too, so while the log is short the sync
    thread is not started at all (waking it to look cost both threads a hand-off of the GIL)."""
    monkeypatch.setattr(wal_sync, "CHECKPOINT_LOOK_SECONDS", 0.0)
    committer = GroupCommitter(ws.store.engine)

    async def main() -> None:
        for n in range(40):
            assert await committer.submit_async(_adds(f"short-{n}"), alone=True) == f"short-{n}"

    asyncio.run(main())
    assert committer.wal is not None and wal_sync._unchecked_pages(ws.store.engine.url.database) < 1000
    assert committer.wal._syncer.thread is None and committer.writes == 40


def test_the_sync_thread_checkpoints_the_log_so_the_loop_need_not(ws, monkeypatch):
    monkeypatch.setattr(wal_sync, "CHECKPOINT_PAGES", 8)
    monkeypatch.setattr(wal_sync, "CHECKPOINT_LOOK_SECONDS", 0.0)
    committer = GroupCommitter(ws.store.engine)
    threads: list[str] = []
    real = wal_sync.WalSync._checkpoint

    def checkpoint(self) -> None:
        threads.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(wal_sync.WalSync, "_checkpoint", checkpoint)
    db = ws.store.engine.url.database

    async def main() -> bool:
        for round_ in range(6):  # far fewer pages than the loop's own threshold (LOOP_CHECKPOINT_PAGES)
            await asyncio.gather(*[committer.submit_async(_adds(f"ck-{round_}-{n}")) for n in range(20)])
        for n in range(500):
            if wal_sync._unchecked_pages(db) < 8:
                return True
            await asyncio.sleep(0.01)
            await committer.submit_async(_adds(f"ck-more-{n}"))  # a sync, after which the thread looks again
        return False

    assert asyncio.run(main())  # the log was copied into the database...
    assert threads and set(threads) == {"datawheel-log-sync"}  # ...by the sync thread
