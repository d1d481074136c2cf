"""The one pagination contract of every list: ``limit`` (1 to 500) and an opaque ``cursor`` in, ``next_cursor`` out.

A cursor is decoded here, before the route runs, so a malformed one, or one another list gave, is a 422
``invalid_request`` naming ``cursor`` (never quoting it) rather than a wrong page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError

from datawheel.store import paging
from datawheel.store.paging import Key

MAX_LIMIT = 500
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")]


def _cursor(kind: str) -> Callable[[str | None], Awaitable[Key | None]]:
    async def decoded(cursor: Annotated[str | None, Query(
            description="the next_cursor of the previous page; leave out for the first page")] = None) -> Key | None:
        if cursor is None:
            return None
        try:
            return paging.decode(kind, cursor)
        except ValueError as exc:
            raise RequestValidationError([{"loc": ("cursor",), "msg": str(exc), "type": "value_error"}]) from None
    return decoded


CyclesCursor = Annotated[Key | None, Depends(_cursor("cycles"))]
ModelsCursor = Annotated[Key | None, Depends(_cursor("models"))]
AuditCursor = Annotated[Key | None, Depends(_cursor("audit"))]
RecordsCursor = Annotated[Key | None, Depends(_cursor("records"))]
