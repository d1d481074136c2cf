"""Every list pages the same way: ``limit`` and ``cursor`` in, ``next_cursor`` out, never skipping or repeating an item.

Items are added between page fetches; a cursor holds the last item's sort key, not an offset, so the
pages still add up to every item exactly once. Rows sharing a timestamp are paged by their id. A bad
cursor is a 422 naming ``cursor`` without quoting it.
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from conftest import ADMIN, APP
from datawheel.store import tables as t
from datawheel.store.db import write
from datawheel.store.paging import decode
from datawheel.store.store import Store
from datawheel.tasks.image import to_png_base64
from datawheel.workspace import Workspace


def walk(client: TestClient, url: str, key: str, headers: dict, limit: int,
         between: list | None = None) -> list[list[dict]]:
    """Every page of a list; ``between`` holds callables, one run after each page fetched while any remain."""
    pages, cursor = [], None
    between = list(between or [])
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = client.get(url, headers=headers, params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(body[key])
        assert len(body[key]) <= limit
        if between:
            between.pop(0)()
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def add_cycle(ws: Workspace) -> str:
    cycle_id = ws.store.start_cycle("test")
    ws.store.finish_cycle(cycle_id, status="failed", error="stopped by the test")
    return cycle_id


def add_model(ws: Workspace, version: int) -> None:
    ws.store.add_model(version=version, model_name="mlp", path=f"models/v{version}.pt", sha256="0" * 64,
                       metrics={}, dataset_id=None, parent=1, cycle_id=None, train_info={})


def contribute(client: TestClient, splits, user: str, n: int) -> str:
    resp = client.post("/v1/contributions", headers=APP, json={
        "user_id": user, "input": {"image": to_png_base64(splits.pool[n][0])}, "label": str(n % 10),
        "consent": {"training": True}})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_cycles_page_oldest_first_as_summaries_and_take_in_cycles_added_meanwhile(client, ws):
    made = [add_cycle(ws) for _ in range(5)]
    late: list[str] = []
    pages = walk(client, "/v1/cycles", "cycles", ADMIN, 2, between=[lambda: late.append(add_cycle(ws))] * 2)
    seen = [c["cycle_id"] for page in pages for c in page]
    assert seen == made + late
    assert all("report" not in c and "params" not in c for page in pages for c in page)
    assert pages[0][0]["status"] == "failed" and pages[0][0]["error"] == "stopped by the test"
    full = client.get(f"/v1/cycles/{made[0]}", headers=ADMIN).json()
    assert "report" in full and "params" in full  # one cycle is still read whole


def test_rows_sharing_a_time_are_paged_by_id(client, ws):
    """A key on the time alone would skip the rest of a tie at a page boundary."""
    made = [add_cycle(ws) for _ in range(5)]
    with write(ws.store.engine) as conn:
        first = ws.store.get_cycle(made[0])["started_at"]
        conn.execute(update(t.cycles).values(started_at=first))
    pages = walk(client, "/v1/cycles", "cycles", ADMIN, 2)
    assert [c["cycle_id"] for page in pages for c in page] == sorted(made)
    assert [len(p) for p in pages] == [2, 2, 1]


def test_models_page_by_version(client, ws):
    for v in range(2, 7):
        add_model(ws, v)
    later = iter(range(7, 9))
    pages = walk(client, "/v1/models", "models", ADMIN, 3, between=[lambda: add_model(ws, next(later))] * 2)
    assert [m["version"] for page in pages for m in page] == list(range(1, 9))
    assert pages[0][0]["aliases"] == ["champion"]


def test_audit_pages_go_back_in_time_and_ignore_entries_appended_meanwhile(client, ws):
    for n in range(7):
        ws.store.audit("test", "note", {"n": n})
    before = [e["id"] for e in ws.store.audit_log(None)]
    added: list[int] = []
    pages = walk(client, "/v1/audit", "entries", ADMIN, 3,
                 between=[lambda: added.append(ws.store.audit("test", "note", {"n": len(added)}))] * 4)
    for page in pages:
        ids = [e["id"] for e in page]
        assert ids == sorted(ids)  # each page oldest first, as the list always was
    seen = [e["id"] for page in reversed(pages) for e in page]
    assert seen == before  # every entry there was, once; none appended later pushed an older one along
    assert len(added) == 3 and not set(added) & set(seen)  # the appended ones wait for a fresh first page


def test_audit_keeps_its_default_of_the_newest_hundred(client, ws):
    for n in range(120):
        ws.store.audit("test", "note", {"n": n})
    body = client.get("/v1/audit", headers=ADMIN).json()
    newest = [e["id"] for e in ws.store.audit_log(100)]
    assert [e["id"] for e in body["entries"]] == newest and body["next_cursor"] is not None


def test_a_users_records_page_with_their_feedback_and_only_theirs(client, ws, splits):
    made = [contribute(client, splits, "pager", n) for n in range(5)]
    contribute(client, splits, "someone-else", 9)
    assert client.post("/v1/feedback", headers=APP, json={"interaction_id": made[3], "user_id": "pager",
                                                          "label": "3", "rating": 1}).status_code == 201
    late: list[str] = []
    pages = walk(client, "/v1/users/pager/data", "records", APP, 2,
                 between=[lambda: late.append(contribute(client, splits, "pager", 20 + len(late)))] * 2)
    records = [r for page in pages for r in page]
    assert [r["id"] for r in records] == made + late
    assert [len(r["feedback"]) for r in records] == [0, 0, 0, 1, 0, 0, 0]
    page = client.get("/v1/users/pager/data", headers=APP, params={"limit": 1}).json()
    assert page["consent"] == {"training": True, "analytics": False} and len(page["records"]) == 1


def test_the_last_page_says_so_even_when_it_is_full(client, ws):
    for _ in range(4):
        add_cycle(ws)
    pages = walk(client, "/v1/cycles", "cycles", ADMIN, 2)
    assert [len(p) for p in pages] == [2, 2]
    empty = client.get("/v1/models", headers=ADMIN, params={"limit": 500}).json()
    assert len(empty["models"]) == 1 and empty["next_cursor"] is None


def _token(parts: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "not base64": "ZZZ@@@not-a-cursor-marker",
    "not JSON": base64.urlsafe_b64encode(b"marker-not-json{").decode(),
    "not a list": _token({"cycles": "marker"}),
    "unknown list": _token(["marker-list", 1]),
    "wrong arity": _token(["models", 1, 2]),
    "wrong type": _token(["models", "marker"]),
    "negative id": _token(["audit", -5]),
    "naive time": _token(["cycles", "2024-01-01T00:00:00", "abc"]),
    "id not an id": _token(["cycles", "2024-01-01T00:00:00+00:00", "marker id;--"]),
    "too long": "A" * 5000,
}


@pytest.mark.parametrize("case", sorted(BAD_CURSORS))
def test_a_malformed_cursor_is_a_422_that_does_not_echo_it(client, case):
    cursor = BAD_CURSORS[case]
    resp = client.get("/v1/cycles", headers=ADMIN, params={"cursor": cursor})
    assert resp.status_code == 422, (case, resp.text)
    body = resp.json()
    assert body["error"] == "invalid_request" and body["detail"].startswith("cursor: ")
    assert cursor not in resp.text and "marker" not in resp.text


def test_a_cursor_from_another_list_is_refused(client, ws):
    for _ in range(3):
        add_cycle(ws)
    cursor = client.get("/v1/cycles", headers=ADMIN, params={"limit": 1}).json()["next_cursor"]
    for url, headers in (("/v1/models", ADMIN), ("/v1/audit", ADMIN), ("/v1/users/u/data", APP)):
        resp = client.get(url, headers=headers, params={"cursor": cursor})
        assert resp.status_code == 422 and resp.json()["detail"].startswith("cursor: "), (url, resp.text)
        assert cursor not in resp.text


@pytest.mark.parametrize("limit", ["0", "501", "x"])
def test_limit_is_1_to_500_on_every_list(client, limit):
    for url, headers in (("/v1/cycles", ADMIN), ("/v1/models", ADMIN), ("/v1/audit", ADMIN),
                         ("/v1/users/u/data", APP)):
        resp = client.get(url, headers=headers, params={"limit": limit})
        assert resp.status_code == 422 and "limit" in resp.json()["detail"], (url, resp.text)


def test_keyset_pages_on_postgres(pg_url):
    """The same keys on PostgreSQL: times compared as timestamptz, ties broken by id, audit paged backwards."""
    store = Store.open(pg_url)
    t.metadata.create_all(store.engine)
    try:
        cycles = []
        for _ in range(5):
            cycles.append(store.start_cycle("test"))
            store.finish_cycle(cycles[-1], status="done", decision="unchanged")
        with write(store.engine) as conn:
            conn.execute(update(t.cycles).where(t.cycles.c.id.in_(cycles[1:4]))
                         .values(started_at=store.get_cycle(cycles[1])["started_at"]))
        seen, cursor = [], None
        while True:
            page = store.cycles_page(2, None if cursor is None else _decode("cycles", cursor))
            seen += [c["id"] for c in page.items]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [cycles[0], *sorted(cycles[1:4]), cycles[4]]
        for n in range(5):
            store.add_record(user_id="pg-user", kind="contribution", input=b"x", content_hash=f"h{n}",
                             consent={"training": True}, label="1")
        first = store.user_data("pg-user", lambda b: {}, limit=3)
        rest = store.user_data("pg-user", lambda b: {}, limit=3, after=_decode("records", first["next_cursor"]))
        assert len(first["records"]) == 3 and len(rest["records"]) == 2 and rest["next_cursor"] is None
        assert {r["id"] for r in first["records"]}.isdisjoint({r["id"] for r in rest["records"]})
        newest = store.audit_page(4)
        older = store.audit_page(4, _decode("audit", newest.next_cursor))
        assert [e["id"] for e in older.items + newest.items] == [e["id"] for e in store.audit_log(8)]
    finally:
        store.close()


def _decode(kind: str, cursor: str | None) -> tuple:
    assert cursor is not None
    return decode(kind, cursor)
