"""datawheel: the user-data flywheel.

serve -> log -> comply -> curate -> train -> gate -> release, and the wheel turns again.
The names below are the public API (pinned by ``tests/test_public_api.py``).
"""


from datawheel.api.app import create_app
from datawheel.client import Client
from datawheel.config import WorkspaceConfig, load_config
from datawheel.demo.simulate import Profile, Simulation, default_population
from datawheel.errors import (
    ClientError,
    ConfigError,
    Conflict,
    ConsentRequired,
    CycleError,
    DatawheelError,
    ImportDataError,
    InvalidInput,
    NotFound,
    PolicyRejected,
    ServerUnavailable,
    WorkspaceError,
)
from datawheel.settings import Settings
from datawheel.version import __version__
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

__all__ = [
    "Client",
    "ClientError",
    "ConfigError",
    "Conflict",
    "ConsentRequired",
    "CycleError",
    "DatawheelError",
    "ImportDataError",
    "InvalidInput",
    "NotFound",
    "PolicyRejected",
    "Profile",
    "ServerUnavailable",
    "Settings",
    "Simulation",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "__version__",
    "create_app",
    "default_population",
    "init_workspace",
    "load_config",
    "run_cycle",
]
