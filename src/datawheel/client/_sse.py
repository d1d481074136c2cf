"""Server-sent events read line by line (the WHATWG rules), for both clients' streams.

A stream is described once (:class:`Stream`): the request, and how each event becomes what the
method yields. The clients only feed it lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from datawheel.client._call import Call

T = TypeVar("T")


@dataclass(frozen=True)
class ServerEvent:
    #: ``message`` when the server named no type
    event: str
    data: str
    #: the last ``id:`` the stream sent, this event's or an earlier one's: where a reconnection resumes
    id: str | None


class Decoder:
    """Lines in, events out: ``data:`` lines joined, comments (heartbeats) skipped, the last id remembered."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None

    def line(self, line: str) -> ServerEvent | None:
        if not line:  # a blank line ends an event; one without data is no event
            event, data, self._event, self._data = self._event, self._data, "", []
            return ServerEvent(event or "message", "\n".join(data), self.last_id) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


@dataclass(frozen=True)
class Stream(Generic[T]):
    """A streamed route: the request (its ``read`` is never called) and each event made into an item, or None
    for the event that closes the stream (chat's ``[DONE]``)."""

    call: Call[Any]
    item: Callable[[ServerEvent], T | None]
