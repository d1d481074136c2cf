"""The exceptions datawheel raises, one tree so callers can catch at the depth they need.

::

    DatawheelError
    ├── ConfigError          a workspace or settings file is wrong (names the key)
    ├── WorkspaceError       a workspace is missing, half-made or already there
    ├── ImportDataError      a seed/eval file cannot be imported (names file and line)
    ├── InvalidInput         a request's input cannot be used (names the field)  -> 422
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


class NotFound(DatawheelError):
    status_code = 404
    code = "not_found"


class Conflict(DatawheelError):
    status_code = 409
    code = "conflict"


class CycleError(DatawheelError):
    code = "cycle_error"
