"""One request, described once: what both clients send, with which key, and how its answer is read.

A route method builds a :class:`Call`; :class:`~datawheel.client.Client` sends it with httpx's
blocking client and :class:`~datawheel.client.AsyncClient` with its async one, and both hand the
response to :func:`answer`. So the two clients cannot differ in a path, a key or a parsed field.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from datawheel.errors import (
    ClientConflict,
    ClientError,
    ClientNotFound,
    Forbidden,
    InvalidRequest,
    MissingKey,
    ServerError,
    ServerUnavailable,
    TooLarge,
    Unauthorized,
    UnexpectedAnswer,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
#: whose key a route needs; None: no key (health, metrics)
Role = Literal["app", "admin", "annotator"]


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request to one route: ``read`` turns its (successful) answer into what the method returns."""

    name: str  # the client method, for messages: a path may carry a user id, a method name never does
    method: str
    path: str
    role: Role | None
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pages(Generic[T]):
    """A list route followed page by page: the request for the page at a cursor, and the items of a page."""

    page: Callable[[str | None], Call[Any]]
    items: Callable[[Any], list[T]]

    def next_cursor(self, page: Any, cursor: str | None) -> str | None:
        """The cursor of the page after ``page``; None after the last. A cursor sent back unchanged would loop."""
        after: str | None = page.next_cursor
        if after is not None and after == cursor:
            raise UnexpectedAnswer(200, "the server sent the same cursor again; stopped rather than loop",
                                   "unexpected_answer")
        return after


def segment(value: str) -> str:
    """A path segment from a caller's string, so ``a/b`` or ``..`` cannot address another route."""
    return quote(value, safe="")


def given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def validated(cls: type[M], data: str | bytes | dict[str, Any], status: int = 200) -> M:
    """``data`` (JSON, or JSON already parsed) as ``cls``; anything else is :class:`UnexpectedAnswer`, naming
    fields but no values."""
    try:
        return cls.model_validate(data) if isinstance(data, dict) else cls.model_validate_json(data)
    except ValidationError as exc:
        # Locations and messages only: pydantic's "input" would quote the body, which may hold personal data.
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise UnexpectedAnswer(status, f"the answer is not a {cls.__name__} ({where})", "unexpected_answer") from None


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    """Read a response's body as ``cls``, validated."""
    return lambda resp: validated(cls, resp.content, resp.status_code)


class Keys:
    """The keys a client holds, and which one each route gets: never one its role does not open."""

    #: role -> the parameters whose keys it accepts, in order of preference
    _ACCEPTS: ClassVar[dict[Role, tuple[str, ...]]] = {
        "app": ("app_key", "admin_key"), "annotator": ("annotator_key", "admin_key"), "admin": ("admin_key",)}

    def __init__(self, key: str | None, *, app_key: str | None, admin_key: str | None,
                 annotator_key: str | None) -> None:
        self._named = {"app_key": app_key, "admin_key": admin_key, "annotator_key": annotator_key}
        self._key = key

    def headers(self, call: Call[Any]) -> dict[str, str]:
        if call.role is None:
            return call.headers
        accepted = self._ACCEPTS[call.role]
        chosen = next((self._named[p] for p in accepted if self._named[p]), None) or self._key
        if not chosen:
            also = " (or the admin key)" if len(accepted) > 1 else ""
            raise MissingKey(f"{call.name} needs the {call.role} key{also}: give the client "
                             + " or ".join(f"{p}=" for p in accepted))
        return {**call.headers, "Authorization": f"Bearer {chosen}"}


def request_args(call: Call[Any], keys: Keys) -> dict[str, Any]:
    """The keyword arguments of ``httpx.(Async)Client.build_request`` for ``call``; MissingKey before any I/O."""
    return {"method": call.method, "url": call.path, "headers": keys.headers(call),
            "params": call.params or None, "json": call.json}


_BY_STATUS: dict[int, type[ClientError]] = {401: Unauthorized, 403: Forbidden, 404: ClientNotFound,
                                            409: ClientConflict, 413: TooLarge, 422: InvalidRequest}


def refusal(resp: httpx.Response) -> ClientError:
    """The error for a refused request: the class by status, the code and detail from the server's answer."""
    status = resp.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    try:
        body = json.loads(resp.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail") is not None:
        return cls(status, str(body["detail"]), str(body.get("error") or "http_error"))
    # Not the server's error shape (a proxy's page, a crash): the status is all that is certain.
    return cls(status, resp.reason_phrase or "no detail", "http_error")


def answer(call: Call[T], resp: httpx.Response) -> T:
    """What the method returns, or the refusal raised; the response's body must have been read."""
    if resp.status_code >= 400:
        raise refusal(resp)
    return call.read(resp)


def unavailable(base_url: httpx.URL, exc: httpx.TransportError) -> ServerUnavailable:
    # Scheme, host and port only: the path may carry a user id, a URL's user:password@ a secret.
    return ServerUnavailable(f"no answer from {base_url.scheme}://{base_url.netloc.decode()} "
                             f"({type(exc).__name__})")


def method_like(method: Callable[..., Any], build: Callable[..., Any], owner: str, returns: str) -> None:
    """Give a client method its description's name, docstring and signature (with ``self``), so ``help()`` and
    ``inspect`` show the route's parameters; ``returns`` wraps the answer type (``{}``, ``Iterator[{}]``...)."""
    sig = inspect.signature(build)
    answer_type = re.fullmatch(r"\w+\[(.*)\]", str(build.__annotations__.get("return", "")))
    method.__name__ = build.__name__
    method.__qualname__ = f"{owner}.{build.__name__}"
    method.__doc__ = build.__doc__
    method.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY), *sig.parameters.values()],
        return_annotation=returns.format(answer_type.group(1)) if answer_type else inspect.Signature.empty)
