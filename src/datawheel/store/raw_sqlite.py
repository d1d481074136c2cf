"""SQLite's hot statements run on the driver's connection, under SQLAlchemy's transaction.

Every predict writes one record, and SQLAlchemy's execution layer (its events, an execution context and a
result object per statement) cost more than the statements: on a 2-core machine a lone write took 0.7 ms
through it and 0.15-0.2 ms as the same statements on ``sqlite3`` (issue 12). So the group-commit writer's
``BEGIN IMMEDIATE``, its consent read and its inserts of deferred rows go to the driver directly. The
transaction stays SQLAlchemy's (it began it, savepoints and the commit are its own), and each value goes
through the type's own bind processor, the one SQLAlchemy would apply, so the stored rows are the same
(``tests/test_raw_sqlite.py`` compares them). A batch's rows for a table go in as a few multi-row INSERTs,
not one execution per row: ``sqlite3`` releases the GIL around every step and must take it back from the event
loop's thread, which under load cost more than the step. PostgreSQL keeps SQLAlchemy's path: its driver's
round trips, not Python, are what a statement costs there.

Driver errors (``sqlite3.Error``) carry SQLite's message, never a value, as SQLAlchemy's hidden parameters do.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection, DateTime, Integer, String, Table
from sqlalchemy.engine import Dialect


def driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn``, or None on another database."""
    if conn.dialect.name != "sqlite":
        return None
    raw = conn.connection.driver_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


class _Plan(NamedTuple):
    #: the INSERT's head, up to VALUES
    head: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


_PLANS: dict[tuple[Table, tuple[str, ...], bool], _Plan | None] = {}
#: SQL for a plan's statement of n rows, built once per (head, n)
_STATEMENTS: dict[tuple[str, int], str] = {}
#: SQLite's smallest limit on a statement's parameters (before 3.32); a statement holds at most this many values
MAX_VALUES = 999


def _plan(dialect: Dialect, table: Table, columns: tuple[str, ...], ignore_conflict: bool) -> _Plan | None:
    """The INSERT for rows with these columns, built once; None when SQLAlchemy must fill a column the rows leave
    out from a Python-side default (only it knows how)."""
    key = (table, columns, ignore_conflict)
    if key in _PLANS:
        return _PLANS[key]
    plan: _Plan | None = None
    named = set(columns)
    if named <= set(table.c.keys()) and not any(c.default is not None for c in table.c if c.key not in named):
        quote = dialect.identifier_preparer.quote
        verb = "INSERT OR IGNORE INTO" if ignore_conflict else "INSERT INTO"
        head = f"{verb} {quote(table.name)} ({', '.join(quote(table.c[k].name) for k in columns)}) VALUES "
        processors = tuple(table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in columns)
        plan = _Plan(head, columns, processors)
    _PLANS[key] = plan
    return plan


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict], ignore_conflict: bool) -> bool:
    """Insert ``rows`` through the driver; False (nothing done) where SQLAlchemy's own INSERT is needed: another
    database, or rows that leave a column with a Python-side default to it."""
    raw = driver(conn)
    if raw is None:
        return False
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    plans = [(_plan(conn.dialect, table, columns, ignore_conflict), group) for columns, group in groups.items()]
    if any(plan is None for plan, _ in plans):
        return False
    for plan, group in plans:
        assert plan is not None
        values = [value if p is None else p(value)
                  for row in group for p, value in zip(plan.processors, (row[k] for k in plan.columns))]
        width = len(plan.columns)
        done, most = 0, max(1, MAX_VALUES // width)
        while done < len(group):
            n = _rows_per_statement(len(group) - done, most)
            raw.execute(_statement(plan, n), values[done * width:(done + n) * width])
            done += n
    return True


def _rows_per_statement(left: int, most: int) -> int:
    """The largest power of two up to ``left`` and ``most``: a batch of any size is a few statements, and each
    table has a handful of statement texts (SQLite's statement cache keeps them prepared)."""
    return 1 << (min(left, most).bit_length() - 1)


def _statement(plan: _Plan, n: int) -> str:
    """One INSERT of ``n`` rows. One statement, not ``executemany``: the driver lets go of the GIL and takes it back
    around every step, once per row, and under load each taking back waited on the event loop's thread."""
    key = (plan.head, n)
    sql = _STATEMENTS.get(key)
    if sql is None:
        row = f"({', '.join('?' for _ in plan.columns)})"
        sql = _STATEMENTS[key] = plan.head + ", ".join([row] * n)
    return sql


_SELECTS: dict[tuple[Table, str, tuple[str, ...], int], tuple[str, tuple[Any, ...]]] = {}
#: the column types whose stored values JSON carries exactly (SQLite writes a REAL with 15 digits, and no BLOB)
_JSON_EXACT = (String, Boolean, Integer, DateTime)
#: SQLite's JSON functions are built in from 3.38; before, a build may lack them, and the caller reads its own way
_JSON_BUILT_IN = sqlite3.sqlite_version_info >= (3, 38, 0)


def rows_where_in(conn: Connection, table: Table, key: str, columns: Sequence[str],
                  values: Sequence[Any]) -> list[tuple] | None:
    """``(key, *columns)`` of the rows whose ``key`` is one of ``values`` (at most a batch's worth), through the
    driver, each value through the type's result processor; None on another database (or an old SQLite).

    The rows come back as one JSON array from one step of one statement: ``sqlite3`` gives up and retakes the
    GIL around every step, once per row read, and under load each retake waited on the event loop's thread.
    So only columns whose values JSON carries exactly are read this way (text, integers, booleans, times). One
    value (a lone write's user) is read with a plain ``=``: a row or none, and the JSON functions cost more
    than a second step.
    """
    raw = driver(conn)
    if raw is None or not _JSON_BUILT_IN:
        return None
    names = (key, *columns)
    cache_key = (table, key, tuple(columns), len(values))
    built = _SELECTS.get(cache_key)
    if built is None:
        inexact = [n for n in names if not isinstance(table.c[n].type, _JSON_EXACT)]
        if inexact:
            raise TypeError(f"rows_where_in reads text, integer, boolean and time columns only, not {inexact}")
        quote = conn.dialect.identifier_preparer.quote
        listed, where = ", ".join(quote(table.c[n].name) for n in names), quote(table.c[key].name)
        sql = (f"SELECT {listed} FROM {quote(table.name)} WHERE {where} = ?" if len(values) == 1 else
               f"SELECT json_group_array(json_array({listed})) FROM {quote(table.name)} "
               f"WHERE {where} IN ({', '.join('?' for _ in values)})")
        processors = tuple(table.c[n].type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
                           for n in names)
        built = _SELECTS[cache_key] = (sql, processors)
    sql, processors = built
    if len(values) == 1:
        rows = raw.execute(sql, tuple(values)).fetchall()
    else:
        (found,) = raw.execute(sql, tuple(values)).fetchone()
        rows = json.loads(found)
    return [tuple(v if p is None else p(v) for p, v in zip(processors, row)) for row in rows]
