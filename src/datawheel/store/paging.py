"""Keyset pages: one list read a page at a time, resumed from an opaque cursor.

A cursor holds the sort key of the last item a page gave (never an offset), so
rows written between two fetches cannot shift later pages: nothing is skipped
or given twice. Each list sorts on a unique key: a time with the row id to
break ties, or an integer id. The token names its list, so a cursor taken from
one list is refused by another rather than read as a position in it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, or_

from datawheel.store.db import aware

#: a list's sort key, as a cursor carries it: (time, id) or (integer id,)
Key = tuple[Any, ...]
#: the types of each list's sort key, in order
KEYS: dict[str, tuple[type, ...]] = {
    "cycles": (datetime, str),
    "models": (int,),
    "audit": (int,),
    "records": (datetime, str),
}
#: far longer than any cursor this module writes; a longer one is refused before it is decoded
MAX_CURSOR = 200
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    #: where the next page starts, or None when this page is the last
    next_cursor: str | None


def encode(kind: str, key: Key) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str) -> Key:
    """The sort key a cursor of list ``kind`` holds; ValueError (never quoting the cursor) otherwise."""
    if len(cursor) > MAX_CURSOR:
        raise ValueError(f"longer than any cursor ({MAX_CURSOR} characters); pass next_cursor as it was given")
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor this server gave; pass next_cursor as it was given") from None
    if not isinstance(parts, list) or not parts or parts[0] not in KEYS:
        raise ValueError("not a cursor this server gave; pass next_cursor as it was given")
    if parts[0] != kind:
        raise ValueError(f"a cursor of another list ({parts[0]}), not of {kind}")
    types = KEYS[kind]
    if len(parts) != len(types) + 1:
        raise ValueError("not a cursor this server gave; pass next_cursor as it was given")
    return tuple(_value(v, want) for v, want in zip(parts[1:], types, strict=True))


def _value(value: Any, want: type) -> Any:
    if want is int and type(value) is int and 0 <= value <= _MAX_INT:
        return value
    if want is str and isinstance(value, str) and value.isascii() and value.isalnum() and len(value) <= 64:
        return value
    if want is datetime and isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if when.tzinfo is not None:
                return when.astimezone(UTC)  # stored times are UTC; SQLite compares them as text
    raise ValueError("not a cursor this server gave; pass next_cursor as it was given")


def after(columns: Sequence[ColumnElement[Any]], key: Key | None) -> ColumnElement[bool] | None:
    """Rows sorting after ``key`` on ``columns`` (ascending), as plain comparisons both databases index."""
    if key is None:
        return None
    if len(columns) == 1:
        return columns[0] > key[0]
    first, tie = columns
    return or_(first > key[0], and_(first == key[0], tie > key[1]))


def page(rows: Sequence[Row[Any]], limit: int, kind: str, key: Callable[[Row[Any]], Key]) -> Page:
    """A page from ``limit + 1`` rows read in order: the extra row only says whether another page follows."""
    return Page([dict(r._mapping) for r in rows[:limit]], next_cursor(rows, limit, kind, key))


def next_cursor(rows: Sequence[Row[Any]], limit: int, kind: str, key: Callable[[Row[Any]], Key]) -> str | None:
    """The cursor after the last of the first ``limit`` rows, if a further row was read."""
    return encode(kind, key(rows[limit - 1])) if limit > 0 and len(rows) > limit else None


def time_key(row: Row[Any], column: str) -> Key:
    """The (time, id) key of a row whose time SQLite handed back without its UTC offset."""
    return aware(getattr(row, column)), row.id
