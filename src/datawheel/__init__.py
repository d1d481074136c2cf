"""datawheel: the user-data flywheel.

serve -> log -> comply -> curate -> train -> gate -> release, and the wheel turns again.
The names below are the public API (pinned by ``tests/test_public_api.py``).
"""

from datawheel.api.app import create_app
from datawheel.client import Client, ClientError
from datawheel.config import WorkspaceConfig, load_config
from datawheel.demo.simulate import Profile, Simulation, default_population
from datawheel.errors import (
    ConfigError,
    Conflict,
    CycleError,
    DatawheelError,
    ImportDataError,
    InvalidInput,
    NotFound,
    WorkspaceError,
)
from datawheel.settings import Settings
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClientError",
    "ConfigError",
    "Conflict",
    "CycleError",
    "DatawheelError",
    "ImportDataError",
    "InvalidInput",
    "NotFound",
    "Profile",
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
