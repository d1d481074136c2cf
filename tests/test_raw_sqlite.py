"""The group-commit writer's statements on the SQLite driver store exactly what SQLAlchemy's would.

Each case writes the same rows twice, once through :mod:`datawheel.store.raw_sqlite` and once through
SQLAlchemy's own INSERT, into two databases made the same way, and compares what SQLite holds byte for
byte (``typeof`` and ``quote`` of every column) and what SQLAlchemy reads back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from datawheel.store import tables as t
from datawheel.store.db import insert_ignore_stmt, make_engine
from datawheel.store.raw_sqlite import insert_rows, rows_where_in

WHEN = datetime(2026, 11, 30, 7, 5, 9, 123456, tzinfo=UTC)


def _engines(tmp_path: Path):
    engines = []
    for name in ("raw", "orm"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        t.metadata.create_all(engine)
        engines.append(engine)
    return engines


def _stored(engine, table) -> list[tuple]:
    """Every row as SQLite holds it: each column's storage class and SQL literal."""
    cols = ", ".join(f"typeof({c.name}), quote({c.name})" for c in table.c)
    with engine.connect() as conn:
        return sorted(conn.execute(text(f"SELECT {cols} FROM {table.name}")).all())


def _read(engine, table) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(table)))


def _both(tmp_path: Path, table, rows: list[dict], ignore: bool = False, before: list[dict] | None = None):
    raw, orm = _engines(tmp_path)
    for engine in (raw, orm):
        for parent, parent_rows in before or []:
            with engine.begin() as conn:
                conn.execute(insert(parent), parent_rows)
    with raw.begin() as conn:
        assert insert_rows(conn, table, rows, ignore) is True
    with orm.begin() as conn:
        conn.execute(insert_ignore_stmt(conn, table) if ignore else insert(table), rows)
    return raw, orm


def _record(n: int, **over) -> dict:
    row = {"id": f"r{n}", "user_id": f"user-{n}", "kind": "interaction", "content_hash": "ab" * 32,
           "input": bytes(range(256)) * 3 + b"\x00", "label": None, "predicted_label": "7", "model_name": "datawheel",
           "model_version": "12", "consent_training": bool(n % 2), "meta": {"locale": "zh-CN", "n": n},
           "created_at": WHEN + timedelta(microseconds=n)}
    row.update(over)
    return row


def test_records_are_stored_as_sqlalchemy_stores_them(tmp_path):
    rows = [_record(0), _record(1, label="猫", meta={}, input=b""),
            _record(2, meta={"nested": {"list": [1, 2.5, None, True]}, "big": 2**62, "text": "é\u200b\U0001F600"},
                    created_at=datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=8)))),
            _record(3, predicted_label=None, model_name=None, model_version=None, kind="contribution")]
    raw, orm = _both(tmp_path, t.records, rows)
    assert _stored(raw, t.records) == _stored(orm, t.records)
    assert _read(raw, t.records) == _read(orm, t.records)
    assert len(_read(raw, t.records)) == 4


@pytest.mark.parametrize(("n", "statements"), [(1, 1), (2, 1), (3, 2), (64, 1), (65, 2), (100, 3), (128, 2)])
def test_a_batch_is_a_few_multi_row_statements_storing_what_sqlalchemy_stores(tmp_path, n, statements):
    """Rows go in as one INSERT per power of two, at most 64 records (999 values) each, in order: the same rows,
    rowids and bytes as SQLAlchemy's ``executemany``, in a handful of statements rather than one per row."""
    rows = [_record(i, meta={} if i % 3 else {"i": i}) for i in range(n)]
    raw, orm = _both(tmp_path, t.records, rows)
    assert _stored(raw, t.records) == _stored(orm, t.records)
    order = "SELECT id FROM records ORDER BY rowid"
    with raw.connect() as a, orm.connect() as b:
        assert a.execute(text(order)).all() == b.execute(text(order)).all()
    seen: list[str] = []
    with raw.begin() as conn:
        driver = conn.connection.driver_connection
        driver.set_trace_callback(seen.append)
        insert_rows(conn, t.records, [_record(i, id=f"again{i}") for i in range(n)], False)
        driver.set_trace_callback(None)
    assert sum(s.startswith("INSERT") for s in seen) == statements


def test_feedback_scores_and_users_with_conflicts_skipped(tmp_path):
    parents = [(t.records, [_record(0), _record(1)])]
    feedback = [{"id": "f0", "record_id": "r0", "user_id": "user-0", "label": "3", "rating": None, "comment": None,
                 "created_at": WHEN},
                {"id": "f1", "record_id": "r1", "user_id": "user-1", "label": None, "rating": -1,
                 "comment": "wrong, it's a 3 'quoted'", "created_at": WHEN}]
    raw, orm = _both(tmp_path, t.feedback, feedback, before=parents)
    assert _stored(raw, t.feedback) == _stored(orm, t.feedback)
    raw, orm = _both(tmp_path / "s", t.interaction_scores,
                     [{"record_id": "r0", "scores": {"3": 0.25, "7": 0.75}}], before=parents)
    assert _stored(raw, t.interaction_scores) == _stored(orm, t.interaction_scores)
    users = [{"user_id": "u1", "consent_training": True, "consent_analytics": False, "consent_updated_at": WHEN,
              "created_at": WHEN}]
    raw, orm = _both(tmp_path / "u", t.users, [*users, {**users[0], "consent_training": False}], ignore=True)
    assert _stored(raw, t.users) == _stored(orm, t.users)
    assert _read(raw, t.users)[0][1] is True  # the first row won; the second was skipped, not an error


def test_a_row_leaving_a_defaulted_column_to_sqlalchemy_is_left_to_it(tmp_path):
    raw, _ = _engines(tmp_path)
    row = {"user_id": "u1", "consent_updated_at": WHEN, "created_at": WHEN}  # consent_* have Python defaults
    with raw.begin() as conn:
        assert insert_rows(conn, t.users, [row], False) is False
    assert _read(raw, t.users) == []


def test_a_failing_insert_raises_and_the_transaction_keeps_nothing(tmp_path):
    raw, _ = _engines(tmp_path)
    with pytest.raises(Exception, match="UNIQUE") as caught, raw.begin() as conn:
        insert_rows(conn, t.records, [_record(0)], False)
        insert_rows(conn, t.records, [_record(5), _record(0, user_id="someone-else")], False)
    assert "someone-else" not in str(caught.value)  # SQLite's message names the column, never a value
    assert _read(raw, t.records) == []


def test_rows_where_in_reads_what_sqlalchemy_reads(tmp_path):
    raw, _ = _engines(tmp_path)
    users = [{"user_id": f"u{n}", "consent_training": n % 2 == 0, "consent_analytics": n == 1,
              "consent_updated_at": WHEN, "created_at": WHEN} for n in range(3)]
    with raw.begin() as conn:
        conn.execute(insert(t.users), users)
    wanted = ["u2", "u0", "missing", "u1"]
    with raw.connect() as conn:
        got = sorted(rows_where_in(conn, t.users, "user_id", ("consent_training", "consent_analytics", "created_at"),
                                   wanted) or [])
        expected = conn.execute(select(t.users.c.user_id, t.users.c.consent_training, t.users.c.consent_analytics,
                                       t.users.c.created_at).where(t.users.c.user_id.in_(wanted)))
        assert got == sorted(tuple(r) for r in expected)
    naive = WHEN.replace(tzinfo=None)  # SQLite keeps no zone: every stored time is UTC
    assert got == [("u0", True, False, naive), ("u1", False, True, naive), ("u2", True, False, naive)]


def test_rows_where_in_reads_one_value_as_sqlalchemy_does(tmp_path):
    """A lone write's user is read with a plain ``=`` (not the JSON array): each id alone, present or missing,
    reads back what SQLAlchemy reads, in one statement."""
    raw, _ = _engines(tmp_path)
    ids = ["u0", 'say "hi"', "e\u0301", "中文用户", "x" * 256]
    users = [{"user_id": u, "consent_training": n % 2 == 0, "consent_analytics": n == 1,
              "consent_updated_at": WHEN, "created_at": WHEN} for n, u in enumerate(ids)]
    with raw.begin() as conn:
        conn.execute(insert(t.users), users)
    columns = ("consent_training", "consent_analytics", "created_at")
    with raw.connect() as conn:
        for wanted in [*ids, "e\u00e9", "missing"]:
            seen: list[str] = []
            conn.connection.driver_connection.set_trace_callback(seen.append)
            got = rows_where_in(conn, t.users, "user_id", columns, [wanted])
            conn.connection.driver_connection.set_trace_callback(None)
            expected = conn.execute(select(t.users.c.user_id, *(t.users.c[c] for c in columns))
                                    .where(t.users.c.user_id == wanted))
            assert got == [tuple(r) for r in expected], wanted
            assert len(seen) == 1 and "json" not in seen[0]
        assert rows_where_in(conn, t.users, "user_id", columns, ["u0"]) == [
            ("u0", True, False, WHEN.replace(tzinfo=None))]


def test_rows_where_in_reads_any_text_exactly_in_one_statement(tmp_path):
    """The rows come back as one JSON array from one statement: every id a person could choose reads back exactly
    (quotes, backslashes, control characters, line separators, astral and combining characters, long ids)."""
    raw, _ = _engines(tmp_path)
    ids = ['say "hi"', "back\\slash", "tab\there\x01\x1f", "line\u2028sep\u2029", "😀 emoji", "e\u0301", "中文用户",
           "x" * 256, "null", "[1, 2]", "{}", "'; DROP TABLE users; --"]
    users = [{"user_id": u, "consent_training": n % 2 == 0, "consent_analytics": n % 3 == 0,
              "consent_updated_at": WHEN, "created_at": WHEN} for n, u in enumerate(ids)]
    with raw.begin() as conn:
        conn.execute(insert(t.users), users)
    seen: list[str] = []
    with raw.connect() as conn:
        conn.connection.driver_connection.set_trace_callback(seen.append)
        got = rows_where_in(conn, t.users, "user_id", ("consent_training", "consent_analytics"), [*ids, "nobody"])
        conn.connection.driver_connection.set_trace_callback(None)
    assert sorted(got or []) == sorted((u["user_id"], u["consent_training"], u["consent_analytics"]) for u in users)
    assert len(seen) == 1


def test_rows_where_in_refuses_columns_json_would_change():
    """A float (SQLite writes 15 digits into JSON) or bytes (no JSON form) would not read back exactly."""
    engine = make_engine("sqlite://")
    t.metadata.create_all(engine)
    with engine.connect() as conn, pytest.raises(TypeError, match="reliability"):
        rows_where_in(conn, t.user_reliability, "user_id", ("reliability",), ["u"])


def test_store_connections_keep_statement_journals_and_sorts_in_memory(tmp_path):
    """A multi-row INSERT inside the batch's transaction keeps an undo copy of the pages it changes (stored rows);
    SQLite would spill it to an unlinked file under /var/tmp, outside the workspace and its secure_delete."""
    raw, _ = _engines(tmp_path)
    with raw.begin() as conn:
        insert_rows(conn, t.records, [_record(i) for i in range(128)], False)
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
