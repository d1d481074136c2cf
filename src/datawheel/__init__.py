"""datawheel: the user-data flywheel.

serve -> log -> comply -> curate -> train -> gate -> release, and the wheel turns again.
The names below are the public API (pinned by ``tests/test_public_api.py``).

They are imported on first use (PEP 562): ``import datawheel.wheel.init`` or the ``datawheel init``
command must not pay for the web server, the demo's simulator or curation's libraries, which
importing them all here cost seconds before any work began.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from datawheel.errors import (
    ClientConflict,
    ClientError,
    ClientNotFound,
    ConfigError,
    Conflict,
    ConsentRequired,
    CycleError,
    DatawheelError,
    Forbidden,
    ImportDataError,
    InvalidInput,
    InvalidRequest,
    MissingKey,
    NotFound,
    PolicyRejected,
    ServerError,
    ServerUnavailable,
    TooLarge,
    Unauthorized,
    UnexpectedAnswer,
    WaitTimedOut,
    WorkspaceError,
)
from datawheel.version import __version__

if TYPE_CHECKING:
    from datawheel.api.app import create_app
    from datawheel.client import AsyncClient, Client
    from datawheel.config import WorkspaceConfig, load_config
    from datawheel.demo.simulate import Profile, Simulation, default_population
    from datawheel.models.onnx_inputs import onnx_inputs
    from datawheel.settings import Settings
    from datawheel.wheel.cycle import run_cycle
    from datawheel.wheel.init import init_workspace
    from datawheel.workspace import Workspace

#: public name -> the module that defines it
_LAZY = {
    "create_app": "datawheel.api.app", "AsyncClient": "datawheel.client", "Client": "datawheel.client",
    "WorkspaceConfig": "datawheel.config",
    "load_config": "datawheel.config", "Profile": "datawheel.demo.simulate", "Simulation": "datawheel.demo.simulate",
    "default_population": "datawheel.demo.simulate", "Settings": "datawheel.settings",
    "run_cycle": "datawheel.wheel.cycle", "init_workspace": "datawheel.wheel.init", "Workspace": "datawheel.workspace",
    "onnx_inputs": "datawheel.models.onnx_inputs",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'datawheel' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


__all__ = [
    "AsyncClient",
    "Client",
    "ClientConflict",
    "ClientError",
    "ClientNotFound",
    "ConfigError",
    "Conflict",
    "ConsentRequired",
    "CycleError",
    "DatawheelError",
    "Forbidden",
    "ImportDataError",
    "InvalidInput",
    "InvalidRequest",
    "MissingKey",
    "NotFound",
    "PolicyRejected",
    "Profile",
    "ServerError",
    "ServerUnavailable",
    "Settings",
    "Simulation",
    "TooLarge",
    "Unauthorized",
    "UnexpectedAnswer",
    "WaitTimedOut",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "__version__",
    "create_app",
    "default_population",
    "init_workspace",
    "load_config",
    "onnx_inputs",
    "run_cycle",
]
