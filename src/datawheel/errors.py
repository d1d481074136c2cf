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
    └── CycleError           a cycle's precondition is broken (not a rejection)

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


class CycleError(DatawheelError):
    code = "cycle_error"
