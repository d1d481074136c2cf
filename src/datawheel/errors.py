"""The exceptions datawheel raises, one tree so callers can catch at the depth they need.

::

    DatawheelError
    ├── ConfigError          a workspace or settings file is wrong (names the key)
    ├── WorkspaceError       a workspace is missing, half-made or already there
    ├── ImportDataError      a seed/eval file cannot be imported (names file and line)
    ├── InvalidInput         a request's input cannot be used (names the field)  -> 422
    ├── PolicyRejected       it carries personal data the policy refuses         -> 422
    ├── ConsentRequired      the policy needs consent the user has not given     -> 403
    ├── NotFound             an interaction, user, model or cycle does not exist -> 404
    ├── Conflict             the request clashes with current state              -> 409
    │   └── ErasedDuringCycle  a model saw a user erased while its cycle ran: not promoted
    ├── CycleError           a cycle's precondition is broken (not a rejection)
    ├── UpstreamError        the upstream model server (proxy mode) failed or is down -> 502
    └── ClientError          the client's side: a refusal (status, code, detail) or no answer
        ├── Unauthorized       401: no key, or a key the server does not know
        ├── Forbidden          403: the key's role cannot use the route, or consent is missing
        ├── ClientNotFound     404: the interaction, user, model, cycle or item does not exist
        ├── ClientConflict     409: the request clashes with the server's current state
        ├── TooLarge           413: the body is larger than the server accepts
        ├── InvalidRequest     422: malformed, or refused by the privacy policy
        ├── ServerError        5xx: the server (or, in proxy mode, its upstream) failed
        ├── UnexpectedAnswer   a 2xx whose body is not the route's answer (a proxy's page, another version)
        ├── MissingKey         the client holds no key for the route's role: nothing was sent
        ├── WaitTimedOut       Client.wait_cycle gave up while the cycle still ran (also a TimeoutError)
        └── ServerUnavailable  no answer came: connection refused or dropped, or timed out

The arrows are the HTTP status the server answers with. ``ClientError`` is the other side
of the same contract: :class:`datawheel.Client` and :class:`datawheel.AsyncClient` raise the
subclass for the status, with the server's ``error`` field as ``code`` (branch on it:
``consent_required`` and a role's 403 are both ``Forbidden``) and its ``detail``, so a
product catches one tree either way. A status without a class of its own is a plain
``ClientError``.

Dropping a record or rejecting a candidate is a *result*, never an exception.
Messages say what is wrong and what to do next; they never quote personal data.
"""

from __future__ import annotations


class DatawheelError(Exception):
    """Base of every error datawheel raises on purpose."""

    status_code = 400
    code = "error"


class ConfigError(DatawheelError):
    code = "config_error"


class WorkspaceError(DatawheelError):
    code = "workspace_error"


class ImportDataError(DatawheelError):
    code = "import_error"


class InvalidInput(DatawheelError):
    status_code = 422
    code = "invalid_input"

    def __init__(self, message: str, field: str = "input") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class PolicyRejected(DatawheelError):
    """The record carries personal data that the policy says must not be stored at all."""

    status_code = 422
    code = "pii_rejected"


class ConsentRequired(DatawheelError):
    """The policy needs more consent than the user has given for this kind of record."""

    status_code = 403
    code = "consent_required"


class NotFound(DatawheelError):
    status_code = 404
    code = "not_found"


class Conflict(DatawheelError):
    status_code = 409
    code = "conflict"


class ErasedDuringCycle(Conflict):
    """A candidate was trained on users erased after its cycle read their records; it must not serve."""

    code = "erased_during_cycle"

    def __init__(self, user_refs: set[str]) -> None:
        super().__init__(f"{len(user_refs)} user(s) whose data this model saw were erased while it trained")
        self.user_refs = user_refs


class CycleError(DatawheelError):
    code = "cycle_error"


class UpstreamError(DatawheelError):
    """The OpenAI-compatible server a proxy-mode workspace forwards to did not answer usefully."""

    status_code = 502
    code = "upstream_error"


class ClientError(DatawheelError):
    """A client's request that failed: refused (``status``), or unanswered (``status`` None); ``code`` is the
    machine-readable reason to branch on, ``detail`` the prose."""

    def __init__(self, status: int | None, detail: str, code: str = "http_error") -> None:
        super().__init__(f"{status} {code}: {detail}" if status is not None else f"{code}: {detail}")
        #: the HTTP status, or None when no answer came
        self.status = status
        self.detail = detail
        self.code = code


class Unauthorized(ClientError):
    """401: the key sent is missing or unknown to the server (a typo, or a key rotated since)."""


class Forbidden(ClientError):
    """403: the key's role cannot use this route (``http_error``), or the user's consent is missing
    (``consent_required``)."""


class ClientNotFound(ClientError):
    """404: what the request names does not exist (or is not this user's: the server does not say which)."""


class ClientConflict(ClientError):
    """409: the request clashes with the current state (a cycle already running, no previous champion...)."""


class TooLarge(ClientError):
    """413: the body is larger than the server's limit."""


class InvalidRequest(ClientError):
    """422: malformed (``invalid_request``, ``invalid_input``) or refused by the policy (``pii_rejected``)."""


class ServerError(ClientError):
    """5xx: the server failed, or a proxy-mode server's upstream did (``upstream_error``)."""


class UnexpectedAnswer(ClientError):
    """A success whose body is not what the route answers: something else answered, or a server of another
    version. The request may have taken effect."""


class MissingKey(ClientError):
    """The client was given no key this route accepts; raised before anything is sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail, code="missing_key")


class WaitTimedOut(ClientError, TimeoutError):
    """Waiting for a cycle ran out of time; the cycle itself goes on."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail, code="wait_timed_out")


class ServerUnavailable(ClientError):
    """No answer: the server is down or unreachable, or took too long. A write may or may not have happened."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail, code="server_unavailable")
