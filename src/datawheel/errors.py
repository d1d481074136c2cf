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
    └── ClientError          the server refused a client's request (status, code, detail)
        └── ServerUnavailable  no answer came: connection refused or dropped, or timed out

The arrows are the HTTP status the server answers with. ``ClientError`` is the other side
of the same contract: :class:`datawheel.Client` raises it with the server's status, its
``error`` field as ``code`` and its ``detail``, so a product catches one tree either way.

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
    """A request the server refused; ``code`` is the machine-readable reason to branch on, ``detail`` the prose."""

    def __init__(self, status: int | None, detail: str, code: str = "http_error") -> None:
        super().__init__(f"{status} {code}: {detail}" if status is not None else f"{code}: {detail}")
        #: the HTTP status, or None when no answer came
        self.status = status
        self.detail = detail
        self.code = code


class ServerUnavailable(ClientError):
    """No answer: the server is down or unreachable, or took too long. A write may or may not have happened."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail, code="server_unavailable")
