"""The Python client a product backend uses: one method per route, typed answers, every key in one object.

::

    with Client(url, app_key=APP, admin_key=ADMIN) as dw:
        answer = dw.predict("user-42", {"text": "..."}, consent=True)   # PredictOut
        dw.feedback(answer.interaction_id, "user-42", label="spam")
        for cycle in dw.iter_cycles():                                    # CycleOut, page after page
            ...

:class:`AsyncClient` has the same methods as coroutines. Both run the same route
descriptions (``_routes.py``: method, path, key, body, answer model), so they cannot
drift apart. A refusal raises the :class:`~datawheel.errors.ClientError` subclass for its
status, with the server's ``error`` code and ``detail``; no answer at all raises
:class:`~datawheel.errors.ServerUnavailable`. Both are :class:`datawheel.DatawheelError`.
"""

from __future__ import annotations

from datawheel.client._async import AsyncClient
from datawheel.client._sync import Client
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
    WaitTimedOut,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ClientConflict",
    "ClientError",
    "ClientNotFound",
    "Forbidden",
    "InvalidRequest",
    "MissingKey",
    "ServerError",
    "ServerUnavailable",
    "TooLarge",
    "Unauthorized",
    "UnexpectedAnswer",
    "WaitTimedOut",
]
