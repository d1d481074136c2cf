"""The public API is pinned: adding or removing a name is a deliberate act."""

import datawheel


def test_public_names_are_pinned():
    """``datawheel.__all__`` lists exactly these names, and each resolves."""
    assert sorted(datawheel.__all__) == sorted([
        "Client", "ClientError", "ConfigError", "Conflict", "ConsentRequired", "CycleError", "DatawheelError",
        "ImportDataError", "InvalidInput", "NotFound", "PolicyRejected", "Profile", "ServerUnavailable", "Settings",
        "Simulation", "Workspace", "WorkspaceConfig", "WorkspaceError", "__version__", "create_app",
        "default_population", "init_workspace", "load_config", "run_cycle",
    ])
    for name in datawheel.__all__:
        assert getattr(datawheel, name) is not None


def test_every_public_error_is_a_datawheel_error():
    """One ``except DatawheelError`` catches whatever datawheel raises on purpose, the client's errors included."""
    exported = [getattr(datawheel, n) for n in datawheel.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, Exception)]
    assert len(errors) == 12
    assert all(issubclass(e, datawheel.DatawheelError) for e in errors)
    assert issubclass(datawheel.ServerUnavailable, datawheel.ClientError)


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
