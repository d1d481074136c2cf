"""The public API is pinned: adding or removing a name is a deliberate act."""

import datawheel


def test_public_names_are_pinned():
    """``datawheel.__all__`` lists exactly these names, and each resolves."""
    assert sorted(datawheel.__all__) == sorted([
        "AsyncClient", "Client", "ClientConflict", "ClientError", "ClientNotFound", "ConfigError", "Conflict",
        "ConsentRequired", "CycleError", "DatawheelError", "Forbidden", "ImportDataError", "InvalidInput",
        "InvalidRequest", "MissingKey", "NotFound", "PolicyRejected", "Profile", "ServerError", "ServerUnavailable",
        "Settings", "Simulation", "TooLarge", "Unauthorized", "UnexpectedAnswer", "WaitTimedOut", "Workspace",
        "WorkspaceConfig", "WorkspaceError", "__version__", "create_app",
        "default_population", "init_workspace", "load_config", "onnx_inputs", "run_cycle",
    ])
    for name in datawheel.__all__:
        assert getattr(datawheel, name) is not None


def test_every_public_error_is_a_datawheel_error():
    """One ``except DatawheelError`` catches whatever datawheel raises on purpose, the client's errors included."""
    exported = [getattr(datawheel, n) for n in datawheel.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, Exception)]
    assert len(errors) == 22
    assert all(issubclass(e, datawheel.DatawheelError) for e in errors)
    client_side = {"ClientConflict", "ClientNotFound", "Forbidden", "InvalidRequest", "MissingKey", "ServerError",
                   "ServerUnavailable", "TooLarge", "Unauthorized", "UnexpectedAnswer", "WaitTimedOut"}
    assert all(issubclass(getattr(datawheel, n), datawheel.ClientError) for n in client_side)


def test_the_client_imports_without_the_server_stack():
    """A product backend importing the client pays for httpx and pydantic, not torch, FastAPI or the store."""
    import subprocess
    import sys

    probe = ("import sys, datawheel; datawheel.Client; datawheel.AsyncClient; "
             "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'numpy', 'datawheel.store.db', "
             "'datawheel.api.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_version_is_written_once():
    """pyproject.toml holds the version; the package reads it from the installed metadata, never a copy."""
    import importlib.metadata
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert datawheel.__version__ == importlib.metadata.version("datawheel") == pyproject["project"]["version"]


def test_settings_refuse_placeholder_keys():
    """A guessable key is refused at start-up rather than served."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="placeholder"):
        datawheel.Settings(app_key="changeme")
